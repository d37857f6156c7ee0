"""The part of the ISMRMRD XML header that fastMRI files use: matrix sizes and encoding limits.

fastMRI (``fastmri/data/mri_data.py``) reads, under ``encoding``:

* ``encodedSpace/matrixSize/{x,y,z}``: the acquired k-space grid (x = readout, often 2x oversampled;
  y = phase encodes);
* ``reconSpace/matrixSize/{x,y,z}``: the size of the reconstruction (``reconstruction_rss`` is the
  centre crop of the image to ``(x, y)``);
* ``encodingLimits/kspace_encoding_step_1/{minimum,maximum,center}``: which phase encodes were
  acquired. fastMRI derives ``padding_left = y // 2 - center`` and ``padding_right = padding_left +
  maximum + 1``: the acquired columns of the zero-padded k-space are ``[padding_left, padding_right)``.

:func:`parse_header` reads those fields; :func:`build_header` writes a valid header with them (for
the simulator), in the ISMRMRD namespace so that fastMRI's namespace-qualified queries find them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from invdiff.datasets.errors import DataFormatError

NAMESPACE = "http://www.ismrm.org/ISMRMRD"

__all__ = ["NAMESPACE", "EncodingInfo", "HeaderError", "build_header", "parse_header"]


class HeaderError(DataFormatError):
    """The ISMRMRD header is malformed or lacks a field fastMRI needs."""


@dataclass(frozen=True)
class EncodingInfo:
    """Encoding fields of an ISMRMRD header.

    Attributes:
        encoded_size: ``(x, y, z)`` of the acquired k-space matrix (readout, phase encode, partition).
        recon_size: ``(x, y, z)`` of the reconstruction matrix.
        step1_limits: ``(minimum, maximum, center)`` of ``kspace_encoding_step_1`` (phase encodes).
        encoded_fov_mm: ``(x, y, z)`` encoded field of view in millimetres, when present.
        recon_fov_mm: ``(x, y, z)`` reconstruction field of view in millimetres, when present.
    """

    encoded_size: tuple[int, int, int]
    recon_size: tuple[int, int, int]
    step1_limits: tuple[int, int, int]
    encoded_fov_mm: tuple[float, float, float] | None = None
    recon_fov_mm: tuple[float, float, float] | None = None

    @property
    def padding(self) -> tuple[int, int]:
        """fastMRI's ``(padding_left, padding_right)``: the acquired phase-encode columns."""
        left = self.encoded_size[1] // 2 - self.step1_limits[2]
        return left, left + self.step1_limits[1] + 1


def _find(root: ET.Element, path: list[str], source: str) -> ET.Element:
    query = "." + "".join(f"//{{{NAMESPACE}}}{p}" for p in path)
    node = root.find(query)
    if node is None or node.text is None or not node.text.strip():
        raise HeaderError(f"{source}: ismrmrd_header lacks {'/'.join(path)}")
    return node


def _ints(root: ET.Element, path: list[str], keys: tuple[str, ...], source: str) -> tuple[int, ...]:
    out = []
    for key in keys:
        text = _find(root, path + [key], source).text
        try:
            out.append(int(text))
        except ValueError:
            raise HeaderError(f"{source}: ismrmrd_header {'/'.join(path + [key])} is not an integer: {text!r}") from None
    return tuple(out)


def _floats_or_none(root: ET.Element, path: list[str], source: str) -> tuple[float, float, float] | None:
    try:
        return tuple(float(_find(root, path + [k], source).text) for k in "xyz")  # type: ignore[return-value]
    except (HeaderError, ValueError):
        return None


def parse_header(xml: bytes | str, source: str = "<header>") -> EncodingInfo:
    """Parse the fields of :class:`EncodingInfo` from an ISMRMRD header.

    Args:
        xml: the header text, as stored in a fastMRI file's ``ismrmrd_header`` dataset.
        source: a name for error messages (the file's path).

    Raises:
        HeaderError: the XML does not parse, or a required field is missing or not an integer.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise HeaderError(f"{source}: ismrmrd_header is not valid XML ({err})") from None
    enc = ["encoding"]
    encoded = _ints(root, enc + ["encodedSpace", "matrixSize"], ("x", "y", "z"), source)
    recon = _ints(root, enc + ["reconSpace", "matrixSize"], ("x", "y", "z"), source)
    limits = _ints(root, enc + ["encodingLimits", "kspace_encoding_step_1"], ("minimum", "maximum", "center"), source)
    info = EncodingInfo(encoded, recon, limits,  # type: ignore[arg-type]
                        _floats_or_none(root, enc + ["encodedSpace", "fieldOfView_mm"], source),
                        _floats_or_none(root, enc + ["reconSpace", "fieldOfView_mm"], source))
    left, right = info.padding
    if not 0 <= left < right <= encoded[1]:
        raise HeaderError(f"{source}: kspace_encoding_step_1 limits {limits} do not fit the {encoded[1]} encoded "
                          f"phase encodes (acquired columns [{left}, {right}))")
    return info


def build_header(info: EncodingInfo, *, receiver_channels: int, system_field_strength_t: float = 3.0,
                 protocol: str = "invdiff simulation") -> bytes:
    """An ISMRMRD header (UTF-8 XML bytes) that :func:`parse_header` and fastMRI read back as ``info``."""
    ET.register_namespace("", NAMESPACE)
    q = lambda tag: f"{{{NAMESPACE}}}{tag}"  # noqa: E731
    root = ET.Element(q("ismrmrdHeader"))
    sys_info = ET.SubElement(root, q("acquisitionSystemInformation"))
    ET.SubElement(sys_info, q("systemFieldStrength_T")).text = f"{system_field_strength_t:g}"
    ET.SubElement(sys_info, q("receiverChannels")).text = str(int(receiver_channels))
    meas = ET.SubElement(root, q("measurementInformation"))
    ET.SubElement(meas, q("protocolName")).text = protocol
    encoding = ET.SubElement(root, q("encoding"))
    for name, size, fov in (("encodedSpace", info.encoded_size, info.encoded_fov_mm),
                            ("reconSpace", info.recon_size, info.recon_fov_mm)):
        space = ET.SubElement(encoding, q(name))
        matrix = ET.SubElement(space, q("matrixSize"))
        for axis, value in zip("xyz", size):
            ET.SubElement(matrix, q(axis)).text = str(int(value))
        fov_node = ET.SubElement(space, q("fieldOfView_mm"))
        for axis, value in zip("xyz", fov if fov is not None else size):
            ET.SubElement(fov_node, q(axis)).text = f"{float(value):g}"
    limits = ET.SubElement(encoding, q("encodingLimits"))
    step1 = ET.SubElement(limits, q("kspace_encoding_step_1"))
    for key, value in zip(("minimum", "maximum", "center"), info.step1_limits):
        ET.SubElement(step1, q(key)).text = str(int(value))
    ET.SubElement(encoding, q("trajectory")).text = "cartesian"
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
