"""The languages: reading YAML/JSON documents with positions, and the spec and recipe languages.

Takes: a file or text, and `--set`/`--hp` overrides. Reading (`reading`, `source`,
`overrides`) keeps the line and column of every node; the pydantic models (`spec`, `recipe`) are
the languages, with their defaults in one place; `validate` turns a document into a Spec or into
located diagnostics; `schema`, `recipe_schema` and `fmt` write documents back out; `names`
resolves a registered model name to its shipped spec.
Hands on: a Document (data and positions) and a validated Spec or Recipe.
Never imports: the plan, any framework (Keras, TensorFlow, JAX, PyTorch) or any room above.
"""
