"""Weight converters (Keras legacy .h5, torchvision, timm -> our safetensors), the export back (our
checkpoints -> torchvision, timm, Keras, ONNX) and golden-data exporters.

Modules:
  archs          our tensor names and shapes per architecture and head (the contract with nets/)
  safetensors_io pure-numpy safetensors reader (strict) and atomic writer
  keras_h5       reader of Keras legacy HDF5 weight files, and a writer of that layout (Keras 2's)
  convert        the converters, as functions and as a command line (python -m weights_tools.convert)
  export         our checkpoints back to torchvision / timm / Keras / ONNX (python -m weights_tools.export)
  export_loader  the self-contained loader module that the export writes next to the weights
  export_check   the export end to end against the engine's logits (tests/cpu/test_experiment_export.cpp)
  export_golden  golden data from torchvision / timm / Keras for the C++ parity tests

Only numpy (and h5py for Keras files, torch for .pth files) is needed to convert; the exporters need the
environment that scripts/lib/python_env.sh sets up.
"""
