"""The plan: the resolved network, the single source of truth for every number.

Takes: a validated Spec (and a Document, to locate problems). `lower` resolves it into a Plan,
an immutable tree of nodes (`ir`) with concrete channels, strides, kernels, sizes, parameters and
multiply-adds; `checks` is the pass that needs the resolved network (total stride, feature taps,
DFC room, whole-network bounds); `fuse` gives the deploy plan; `features` the backbone taps;
`memory` the memory estimates; `pipeline` runs load -> validate -> check -> lower.
Hands on: a Plan, read by the backend, the views, export and the sweep.
Never imports: any framework (Keras, TensorFlow, JAX, PyTorch), the backend or any room above.
"""
