"""`mait-deploy compare`: MaiT models against baselines (timm DeiT/CaiT/Swin or any ONNX), compiled for each target
and precision and timed side by side in one process."""
