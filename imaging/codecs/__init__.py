"""Pixel codecs, looked up by transfer syntax UID. No Django here: plain code on bytes and numpy arrays.

- `description.PixelDescription`: what a frame's pixels are (size, depth, sign, photometric, transfer syntax).
- `registry`: the codec for a transfer syntax (`codec_for`, `frame_decode`, `frame_encode`, `is_lossless`,
  `media_type`); every caller decodes and encodes single frames through it.
- `base`: the `Codec` interface and the errors the registry raises.
- Codec plugins: `native` (Explicit VR Little Endian), `htj2k` (HTJ2K, with the codestream layout the store writes),
  `jpeg2000` (JPEG 2000), `jpeg` (JPEG baseline).
- `dataset_pixels`: a received dataset's pixel data, checked and decoded whole by pydicom's plugins at import.
- `dimensions` (frame header sizes, checked before decoding), `ifrc` and `wavelet` (checksums of every resolution),
  `openjpeg_check` (the independent verifier of what the store writes, and reduced-resolution decoding).

To add a codec: write a module here with a subclass of `base.Codec` that sets `name` and `syntaxes` (one
`SyntaxFacts` per transfer syntax UID: lossless, media type, `encodes`), implements `decode` (and `is_available`,
`reducible_levels`, `encode` where it can), then register an instance at the bottom of `registry.py`. A syntax has
one codec; registering a second raises. Add the syntax to the parametrized cases in tests/imaging/codecs/test_codecs.py.
"""
