"""
The private names of other libraries this project uses, each in one module, because no
public API does the job: each is pinned here to the versions it was checked on. An
upgrade outside them fails this test, naming the module and what to re-check, instead
of breaking that module silently.
"""

import argparse
import importlib
import sys
from importlib.metadata import version

import pytest

# (our module, the library, versions checked, its private names the module relies on, why)
PRIVATE_USES = [
    (
        "atto_detectron.checkpoint",
        "fvcore",
        {"0.1.5.post20221221"},
        [
            "fvcore.common.checkpoint.Checkpointer._load_file",
            "fvcore.common.checkpoint.Checkpointer._load_model",
        ],
        "AtomicCheckpointer overrides fvcore's documented override points for reading files",
    ),
    (
        "atto_detectron.checkpoint",
        "sal-detectron2",
        {"0.7.2"},
        [
            "detectron2.checkpoint.DetectionCheckpointer._load_file",
            "detectron2.checkpoint.DetectionCheckpointer._load_model",
            "detectron2.checkpoint.DetectionCheckpointer._torch_load",
        ],
        "AtomicCheckpointer reads .pyth weights-only and checks shapes before loading; "
        "it resets _parsed_url_during_load after a failed load",
    ),
    (
        "atto_detectron.engine.arguments",
        "python",
        {"3.10"},
        [],  # instance attributes: see test_argparse_table_matches_the_public_behaviour
        "parse_args_any_order reads a parser's _actions and _option_string_actions",
    ),
    (
        "atto_detectron.deploy.export",
        "torchvision",
        {"0.18.1"},
        ["torchvision.ops.boxes._batched_nms_coordinate_trick"],
        "exports replace it while tracing: one NMS per class or level, and no ONNX If node",
    ),
    (
        "benchmarks.roofline_model",
        "torch",
        {"2.3.1"},
        ["torch.utils._python_dispatch.TorchDispatchMode", "torch.utils._pytree.tree_flatten"],
        "the roofline counts bytes per ATen operator in a dispatch mode",
    ),
]


def _installed(package: str) -> str:
    if package == "python":
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    return version(package).split("+")[0]


def _resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize(
    "module, package, checked, names, why",
    PRIVATE_USES,
    ids=[u[0] + ":" + u[1] for u in PRIVATE_USES],
)
def test_private_names_are_used_only_on_the_versions_they_were_checked_on(
    module, package, checked, names, why
):
    importlib.import_module(module)
    installed = _installed(package)
    assert installed in checked, (
        f"{module} uses private names of {package} ({', '.join(names)}: {why}), checked on "
        f"{package} {', '.join(sorted(checked))}; {installed} is installed. Check that they "
        f"still exist and behave as {module} assumes, then add {installed} in "
        f"tests/test_private_apis.py."
    )
    for name in names:
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            pytest.fail(f"{module} relies on {name}, which {package} {installed} lacks ({why}).")


def test_argparse_table_matches_the_public_behaviour():
    # What parse_args_any_order reads from the private table is what argparse parses.
    parser = argparse.ArgumentParser()
    parser.add_argument("--config-file", "-c")
    parser.add_argument("--resume", action="store_true")
    assert set(parser._option_string_actions) >= {"--config-file", "-c", "--resume", "-h"}
    assert parser._option_string_actions["-c"].dest == "config_file"
    assert [a.dest for a in parser._actions] == ["help", "config_file", "resume"]
