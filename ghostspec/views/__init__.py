"""Views of a plan: the inspect tables, the diagram and the registry listing.

Takes: a Plan (or the registry). `report` renders the per-node cost table (text, markdown,
JSON); `plot` draws the network; `catalog` lists registered models with their costs.
Hands on: text and image files for people.
Never imports: any framework, the backend, deploy, training or the CLI.
"""
