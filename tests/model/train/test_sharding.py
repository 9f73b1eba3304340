"""FSDP and DeepSpeed ZeRO through accelerate's config files (configs/accelerate/, model/train/sharding.py),
as far as they go without GPUs: each config file goes through accelerate's own loader and launcher
into the plugin the trainer then adjusts; DeepSpeed missing is one line; the sharded settings and
the equal evaluation shares. The FSDP run itself (two CPU processes) is in test_distributed.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

from app.cli import main
from model.train import sharding
from model.train.run_folder import TrainingError

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "accelerate"


def launch_env(name: str) -> tuple[object, dict[str, str]]:
    """(the launch arguments, the environment `accelerate launch --config_file NAME.yaml` gives the processes)."""
    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / f"{name}.yaml"), "train.py"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:  # as launch_command sets it before the DeepSpeed launcher
        args.deepspeed_fields_from_accelerate_config = ",".join([*defaults.deepspeed_config, "mixed_precision"])
        return args, prepare_deepspeed_cmd_env(args)[1]
    return args, prepare_multi_gpu_env(args)


def test_fsdp_config_wraps_the_decoder_layers_fully_sharded(tiny_loaded, monkeypatch):
    from accelerate.utils.dataclasses import get_module_class_from_name

    args, env = launch_env("fsdp")
    assert args.use_fsdp and args.mixed_precision == "bf16" and args.num_processes == 8
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True  # full sharding
    assert plugin.transformer_cls_names_to_wrap == ["Qwen2_5_VLDecoderLayer"]
    assert get_module_class_from_name(tiny_loaded.model, "Qwen2_5_VLDecoderLayer") is not None
    assert str(plugin.state_dict_type).endswith("FULL_STATE_DICT")  # the adapter gathered whole for saving


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_become_the_plugin_the_trainer_sets(stage, monkeypatch):
    args, env = launch_env(f"deepspeed_zero{stage}")
    assert args.use_deepspeed and args.mixed_precision == "bf16"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plugin = DeepSpeedPlugin()  # built from the environment, as accelerate does in each process
    assert plugin.zero_stage == stage
    acc = SimpleNamespace(distributed_type=DistributedType.DEEPSPEED, state=SimpleNamespace(deepspeed_plugin=plugin),
                          gradient_accumulation_steps=1)  # fmt: skip
    sharding.before_prepare(acc, accum=8, max_grad_norm=0.5)
    config = plugin.deepspeed_config
    assert (config["train_micro_batch_size_per_gpu"], config["gradient_accumulation_steps"]) == (1, 8)
    assert config["gradient_clipping"] == 0.5 and acc.gradient_accumulation_steps == 8
    if stage == 3:  # the adapter can be gathered from the shards for saving
        assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="DeepSpeed is installed")
def test_deepspeed_missing_is_one_line(tiny_ckpt, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data.json"
    data.write_text("[]")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # what `accelerate launch` sets from the config file
    code = main(["train", "--data", str(data), "--model", str(tiny_ckpt), "--out", str(tmp_path / "out"),
                 "--device", "cpu", "--steps", "1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: the accelerate config asks for DeepSpeed, which is not installed: `pip install deepspeed` (it "
        "builds against your CUDA; GPUs only), or launch with configs/accelerate/fsdp.yaml or --multi_gpu"
    ]


def test_sharded_loading_and_the_cpu_fallback_are_said(monkeypatch):
    fsdp = SimpleNamespace(distributed_type=DistributedType.FSDP)
    assert sharding.load_settings(fsdp, "auto", "cuda:1") == ("bf16", "cpu")  # the shards go to the GPU in prepare
    assert sharding.load_settings(fsdp, "fp32", "cuda:1") == ("fp32", "cpu")
    with pytest.raises(TrainingError, match="--precision 4bit with FSDP: quantised weights are not sharded"):
        sharding.load_settings(fsdp, "4bit", "cuda:1")
    plain = SimpleNamespace(distributed_type=DistributedType.MULTI_CPU, device="cpu", num_processes=2)
    assert sharding.load_settings(plain, "4bit", "cpu") == ("4bit", "cpu")
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert sharding.mode_note(plain) is None
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # the FSDP config launched on the CPU: accelerate runs DDP
    assert sharding.mode_note(plain) == (
        "warning: the accelerate config asks for FSDP, which accelerate runs on GPUs only: this run on cpu is "
        "plain data-parallel (every process holds the whole model)"
    )


def test_sharded_evaluation_runs_as_many_forwards_on_every_process():
    assert sharding.eval_shares(5, 1, 2, sharded=False) == [(1, True), (3, True)]
    assert sharding.eval_shares(5, 0, 2, sharded=True) == [(0, True), (2, True), (4, True)]
    assert sharding.eval_shares(5, 1, 2, sharded=True) == [(1, True), (3, True), (0, False)]  # padded, uncounted
    assert sharding.eval_shares(1, 2, 3, sharded=True) == [(0, False)]
    assert sharding.eval_shares(0, 0, 2, sharded=True) == []
