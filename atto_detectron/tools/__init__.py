"""
The command-line tools of an installed atto-detectron, as modules (Detectron2's
tools/train_net.py and demo.py, with the project's additions):

    python -m atto_detectron.tools.train_net --config-file CONFIG ...   # train, evaluate
    python -m atto_detectron.tools.demo --config-file CONFIG --input ...  # draw predictions
    python -m atto_detectron.tools.export_model --config-file CONFIG ...  # ONNX, TorchScript

also installed as the commands ``atto-train-net``, ``atto-demo`` and ``atto-export-model``;
the repository's ``tools/*.py`` run the same code.
"""
