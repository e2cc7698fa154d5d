"""The training engine shared by pretrain/ and align/: model+optimizer set-up, the step loop,
checkpoints, metrics. Stages plug in a batch source and a forward step."""
