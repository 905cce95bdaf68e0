"""Deployment: artifacts from a model, each checked for parity, and how fast they run.

Takes: a built or saved model (`source` answers "what model is this?" for run folders and
.keras files). `export` writes SavedModel, TFLite and ONNX; `tflite` runs TFLite artifacts;
`calibration` picks int8 calibration images; `quantized` compares int8 and float accuracy;
`latency` and `profile` time the deploy form per block.
Hands on: artifact files, parity and accuracy figures, latency tables.
Never imports: the training room, evaluate, the CLI or the package face. TensorFlow only inside
functions that convert or run TensorFlow artifacts.
"""
