"""The authors' recipe (trainable LayerNorms, MLP head): trains, saves, exports into the ONE shared program, and runs
in the ExecuTorch runtime with parity; plain tasks on the same program keep their five-tensor format_version 1 files.

Tiny random BERT (fast); artifacts come from seeded random values (LayerNorms and head moved far from their
initial values so a program that ignored them would visibly differ).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from mobile_export import export_bundle, read_memory
from mobile_export.memory import read_defaults
from mobile_export.model import INPUT_NAMES, RECIPE_INPUT_NAMES
from mobile_export.parity import bundle_defaults, load_android, run_android
from pipeline import TaskModel, TaskSpec, UserError, load_task, save_task
from pipeline.backbone import fingerprint, load_backbone
from pipeline.spartan import SpartanConfig

SENTENCES = ["a gentle and moving film", "the plot is thin, the acting worse", "ok", "x " * 40]


def make_task(backbone_dir: str, out: Path, task: str, seed: int, head: str = "linear",
              train_layernorms: bool = False) -> Path:
    backbone, _ = load_backbone(backbone_dir)
    torch.manual_seed(seed)
    labels = ["a", "b", "c"] if task == "three" else ["negative", "positive"]
    model = TaskModel(backbone, "spartan", SpartanConfig(train_layernorms=train_layernorms).to_dict(),
                      TaskSpec(task, labels), head=head)
    with torch.no_grad():
        for m in model.delta:
            m.Vt.normal_(std=0.5)
        for p in model.head.parameters():
            p.normal_(std=1.0)
        if train_layernorms:
            for m in backbone.modules():
                if isinstance(m, torch.nn.LayerNorm):
                    m.weight.mul_(1 + 0.5 * torch.randn_like(m.weight))
                    m.bias.add_(0.3 * torch.randn_like(m.bias))
    save_task(model, out, backbone_id=backbone_dir, backbone_fingerprint=fingerprint(load_backbone(backbone_dir)[0]),
              metric="accuracy", metrics={"eval_accuracy": 0.5})
    return out


@pytest.fixture(scope="module")
def tasks(tiny_bert, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("recipe_tasks")
    return {"plain": make_task(tiny_bert, d / "plain", "plain", 1),
            "recipe": make_task(tiny_bert, d / "recipe", "recipe", 2, head="mlp", train_layernorms=True),
            "ln": make_task(tiny_bert, d / "ln", "ln", 3, train_layernorms=True),
            "three": make_task(tiny_bert, d / "three", "three", 4, head="mlp")}


@pytest.fixture(scope="module")
def dist(tasks, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("recipe_dist") / "dist"
    export_bundle(list(tasks.values()), out, "android", max_seq_length=64, quiet=True)
    return out


def test_artifact_round_trip_keeps_head_and_layernorms(tasks):
    model, _, meta = load_task(tasks["recipe"])
    assert meta["head"] == "mlp" and meta["options"]["train_layernorms"]
    names = set(model.trainable_state_dict())
    assert {"head.dense.weight", "head.dense.bias", "head.out_proj.weight", "head.out_proj.bias"} <= names
    assert any("LayerNorm" in n for n in names) and "head.weight" not in names


@pytest.mark.slow  # shares the module's one export (~60 s on 2 busy cores)
def test_manifest_names_every_input_and_plain_files_stay_version_1(dist, tasks):
    m = json.loads((dist / "manifest.json").read_text())
    target = m["targets"]["android"]
    assert m["format_version"] == 2
    assert [i["name"] for i in target["inputs"]] == list(RECIPE_INPUT_NAMES)
    defaults = read_defaults(dist / target["defaults"])
    assert {i["name"] for i in target["inputs"] if i.get("default")} == set(defaults)
    assert target["defaults"] in {f["path"] for f in target["files"]}  # downloaded and checked with the program
    assert len(m["backbone"]["layernorms"]) == defaults["ln_weight"].shape[0] == 5  # emb + 2 per layer (2 layers)
    shapes = {i["name"]: i["shape"] for i in target["inputs"]}
    files = {}
    for task in tasks:
        with safe_open(str(dist / "android" / "memories" / f"{task}.safetensors"), framework="numpy") as f:
            header = json.loads(f.metadata()["spartan_edge_memory"])
            files[task] = (header, {k: f.get_tensor(k).shape for k in f.keys()})
    header, plain = files["plain"]
    assert header["format_version"] == 1 and set(plain) == set(INPUT_NAMES[2:])  # exactly today's file
    header, recipe = files["recipe"]
    assert header["format_version"] == 2 and header["head"] == "mlp" and header["train_layernorms"]
    assert set(recipe) == set(RECIPE_INPUT_NAMES[2:]) and header["tensors"] == list(RECIPE_INPUT_NAMES[2:])
    assert all(list(s) == shapes[n] for n, s in recipe.items())
    assert set(files["ln"][1]) == {*INPUT_NAMES[2:], "ln_weight", "ln_bias"}
    assert m["tasks"]["recipe"]["head"] == "mlp" and m["tasks"]["plain"]["train_layernorms"] is False


@pytest.mark.slow  # shares the module's one export (~60 s on 2 busy cores)
def test_every_kind_runs_on_the_one_program_with_parity(dist, tasks):
    method = load_android(dist)  # ONE program for plain, LayerNorm, MLP and both
    defaults = bundle_defaults(dist)
    for task, path in tasks.items():
        model, tok, _ = load_task(path)
        memory, header = read_memory(dist / "android" / "memories" / f"{task}.safetensors")
        for text in SENTENCES:
            enc = dict(tok(text, return_tensors="pt"))
            got = run_android(method, enc, memory, header["num_outputs"], defaults)
            with torch.no_grad():
                want = model(**enc).numpy()
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=task)
    # the recipe task's own tensors matter: fed the defaults instead, the program gives other logits
    memory, header = read_memory(dist / "android" / "memories" / "recipe.safetensors")
    stripped = {k: v for k, v in memory.items() if k in INPUT_NAMES}
    enc = dict(tok(SENTENCES[0], return_tensors="pt"))
    without = run_android(method, enc, stripped, 2, defaults)
    assert not np.allclose(without, run_android(method, enc, memory, 2, defaults), atol=1e-3)


@pytest.mark.slow  # shares the module's one export (~60 s on 2 busy cores)
def test_missing_input_is_a_clear_error(dist):
    memory, _ = read_memory(dist / "android" / "memories" / "plain.safetensors")
    ids = torch.tensor([[101, 2307, 102]])
    with pytest.raises(UserError, match="ln_weight"):
        run_android(load_android(dist), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, memory, 2, {})


def test_unknown_head_in_artifact_is_refused(tasks, tmp_path):
    from safetensors.torch import load_file, save_file

    path = tasks["plain"]  # save_task wrote the artifact file itself at this path
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["spartan_edge"])
    meta["head"] = "transformer"
    bad = tmp_path / "task.safetensors"
    save_file(load_file(str(path)), str(bad), metadata={"spartan_edge": json.dumps(meta)})
    with pytest.raises(UserError, match="head 'transformer'"):
        load_task(bad)


def test_train_cli_recipe_options(tiny_bert, sentiment_csvs, tmp_path):
    from pipeline.train import build_parser, config_from_args
    from pipeline.trainer import train

    train_csv, dev_csv = sentiment_csvs
    args = build_parser().parse_args(["--train-file", train_csv, "--validation-file", dev_csv, "--output-dir",
                                      str(tmp_path / "run"), "--head", "mlp", "--train-layernorms", "--epochs", "1",
                                      "--max-train-samples", "16", "--threads", "1",
                                      "--model", tiny_bert])
    train(config_from_args(args))
    _, _, meta = load_task(tmp_path / "run")
    assert meta["head"] == "mlp" and meta["options"]["train_layernorms"]
    bad = build_parser().parse_args(["--train-file", train_csv, "--validation-file", dev_csv, "--output-dir",
                                     str(tmp_path / "lora"), "--method", "lora", "--train-layernorms"])
    with pytest.raises(UserError, match="train-layernorms"):
        train(config_from_args(bad))


@pytest.mark.slow  # shares the module's one export
def test_formats_and_client_read_both_kinds(dist):
    """The numpy-only readers: spartan_formats (what the server validates uploads with) and the device client."""
    from safetensors.numpy import load_file, save

    from apps.client.errors import IntegrityError
    from apps.client.memory import load_memory, task_inputs
    from spartan_formats import FormatError
    from spartan_formats.dist_manifest import backbone_description, load_dist_manifest
    from spartan_formats.memory import RECIPE_TENSORS, read_memory

    m = load_dist_manifest(dist)  # the recipe manifest (format_version 2) validates
    backbone = backbone_description(m, "android")
    defaults = load_file(str(dist / m["targets"]["android"]["defaults"]))
    names = [i["name"] for i in backbone["inputs"][2:]]
    for task in ("plain", "recipe", "ln", "three"):
        path = dist / "android" / "memories" / f"{task}.safetensors"
        mem = read_memory(path.read_bytes(), backbone, task)
        fed = mem.inputs_fp32(names, defaults)
        assert [list(a.shape) for a in fed] == [i["shape"] for i in backbone["inputs"][2:]]
        client = task_inputs(load_memory(path, task, backbone), backbone, defaults)
        assert all(np.array_equal(a, b) for a, b in zip(fed, client, strict=True))
    with pytest.raises(IntegrityError, match="ln_weight"):  # a recipe program without its defaults file
        task_inputs(load_memory(dist / "android" / "memories" / "plain.safetensors", "plain", backbone), backbone,
                    None)
    path = dist / "android" / "memories" / "recipe.safetensors"
    with safe_open(str(path), framework="numpy") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    header = json.loads(meta["spartan_edge_memory"])
    assert header["tensors"][5:] == list(RECIPE_TENSORS)
    # refused: a tensor no program takes, a LayerNorm stack of the wrong length, the tensor list out of step with
    # the file, and the recipe tensors under format_version 1 (what an old reader would run without them)
    bad_files = [
        (save({**tensors, "extra": np.zeros(3, np.float32)}, metadata=meta), "tensor_set"),
        (save({**tensors, "ln_weight": tensors["ln_weight"][:-1]}, metadata=meta), "tensor_shape"),
        (save({k: v for k, v in tensors.items() if k != "head_skip"}, metadata=meta), "tensor_set"),
        (save(tensors, metadata={"spartan_edge_memory": json.dumps({**header, "format_version": 1})}), "tensor_set"),
    ]
    for data, code in bad_files:
        with pytest.raises(FormatError) as e:
            read_memory(data, backbone, "recipe")
        assert e.value.code == code
    # a plain program (manifest v1) does not take a recipe file
    plain_backbone = {**backbone, "inputs": backbone["inputs"][:7]}
    with pytest.raises(FormatError, match="not an input"):
        read_memory(path.read_bytes(), plain_backbone, "recipe")


@pytest.mark.slow  # shares the module's one export
def test_into_recipe_bundle_and_plain_bundle_refuses_recipe_task(tiny_bert, dist, tasks, tmp_path):
    import shutil

    from mobile_export.bundle import add_memories, check_fits
    from pipeline import read_metadata

    copy = tmp_path / "dist"
    shutil.copytree(dist, copy)
    program = (copy / "android" / "backbone.pte").read_bytes()
    extra = make_task(tiny_bert, tmp_path / "extra", "extra", 5, head="mlp")
    m = add_memories(copy, [extra], quiet=True)
    assert m["format_version"] == 2 and m["tasks"]["extra"]["head"] == "mlp"
    assert (copy / "android" / "backbone.pte").read_bytes() == program
    memory, header = read_memory(copy / "android" / "memories" / "extra.safetensors")
    assert header["format_version"] == 2 and "head_dense_weight" in memory
    plain = {**m, "format_version": 1, "tasks": {}}  # what a bundle of plain tasks has: the 7-input program
    with pytest.raises(UserError, match="plain program cannot take"):
        check_fits([(extra, read_metadata(extra))], plain)
    check_fits([(tasks["plain"], read_metadata(tasks["plain"]))], plain)  # a plain task still fits


def test_mutual_information_and_label_shuffle_baseline():
    from pipeline.analyze_parents import mutual_information

    assert mutual_information(np.diag([10.0, 10.0])) == pytest.approx(1.0)  # label fixes the parent: 1 bit
    assert mutual_information(np.ones((3, 4))) == pytest.approx(0.0, abs=1e-12)  # independent


def test_analyze_parents_command(tasks, tmp_path):
    from pipeline.analyze_parents import main

    texts = tmp_path / "texts.csv"
    rows = [("a gentle and moving film", "pos"), ("dull and awful", "neg"), ("superb acting", "pos"),
            ("a poor plot", "neg")] * 3
    texts.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    out = tmp_path / "fig" / "parents.png"
    assert main(["--artifact", str(tasks["plain"]), "--texts", str(texts), "--out", str(out), "--shuffles", "5",
                 "--min-count", "2"]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert out.stat().st_size > 5000 and out.with_suffix(".md").read_text().startswith("# Where SPARTAN")
    assert result["labels"] == ["neg", "pos"] and len(result["layers"]) == 2  # the tiny BERT's two memories
    for layer in result["layers"]:
        assert np.allclose(np.asarray(layer["usage"]).sum(1), 1.0, atol=1e-3)  # rounded to 4 places
        assert layer["mutual_information_bits"] >= 0 and layer["shuffled_mi_bits_max"] >= 0
    assert main(["--artifact", str(tasks["plain"]), "--texts", str(tmp_path / "none.csv"), "--out", str(out)]) == 2


def test_fused_scores_read_equals_the_two_product_read(tiny_bert):
    """spartan_fused (parent and child scores in one product, for the int8 program) is the same function."""
    import copy

    from mobile_export.model import EdgeModel, MemoryShape

    backbone, tok = load_backbone(tiny_bert)
    shape = MemoryShape(2, 16, 3, 8, 1.6, backbone.config.hidden_size)
    two = EdgeModel(copy.deepcopy(backbone), shape, tok.sep_token_id)
    one = EdgeModel(copy.deepcopy(backbone), shape, tok.sep_token_id, fused_scores=True)
    g = torch.Generator().manual_seed(0)
    h = shape.hidden_size
    memory = [torch.randn(2, 16, h, generator=g), torch.randn(2, 48, h, generator=g),
              torch.randn(2, h, 48, generator=g) * 0.5, torch.randn(8, h, generator=g), torch.randn(8, generator=g)]
    enc = tok(["a gentle and moving film", "the plot is thin"], ["yes", "no"], padding=True, return_tensors="pt")
    with torch.no_grad():
        a = two(enc["input_ids"], enc["attention_mask"], *memory)
        b = one(enc["input_ids"], enc["attention_mask"], *memory)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
