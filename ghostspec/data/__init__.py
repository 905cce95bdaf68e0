"""Data: labelled image folders, their one evaluation preprocessing, augmentation, pipelines.

Takes: an image folder (DIR/<class>/*, DIR/train|val/<class>/*) or image files. `images` checks
and decodes files (headers read first, bounded); `pipeline` discovers splits and builds the
training and evaluation datasets (tf.data); `augment` holds the training augmentations;
`scoring` computes top-1, top-5, loss and confusion from outputs and labels.
Hands on: samples, splits, datasets and scores to train, evaluate and deploy.
Never imports: the backend, the plan's lowering, or any room above (train, deploy, cli).
"""
