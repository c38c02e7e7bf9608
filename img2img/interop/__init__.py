"""Models in and out of img2img: reference-checkpoint import (`reference`), ONNX / TorchScript
export (`export`), an ONNX Runtime runner (`onnx_runtime`) and exported files loaded back
(`exported`)."""
