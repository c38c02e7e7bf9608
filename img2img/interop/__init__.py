"""Models in and out of img2img: reference-checkpoint import (`reference`) and ONNX /
TorchScript export with an ONNX Runtime runner (`export`, `onnx_runtime`)."""
