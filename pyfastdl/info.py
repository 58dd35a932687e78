"""`pyfastdl info`: what was built and what this machine can run."""

from __future__ import annotations

from . import __version__, backend
from ._core import _C


def collect() -> dict:
    info = {
        "version": __version__,
        "cuda_kernels_compiled": bool(_C.WITH_CUDA),
        "cuda_architectures": [f"sm_{a}" for a in _C.CUDA_ARCHITECTURES.split(",") if a],
        "openmp_threads": backend.get_num_threads(),
        "cpu_instruction_set": _C.cpu.get_isa(),
        "families": {"cpu": list(_C.cpu.FAMILIES)},
        "gpus": [],
        "gpu_unavailable_reason": None,
    }
    if _C.WITH_CUDA:
        info["families"]["cuda"] = list(_C.cuda.FAMILIES)
    reason = backend.cuda_unavailable_reason()
    if reason is None:
        cp = backend.cupy_or_none()
        for i in range(cp.cuda.runtime.getDeviceCount()):
            props = cp.cuda.runtime.getDeviceProperties(i)
            name = props["name"]
            info["gpus"].append(
                {
                    "index": i,
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "compute_capability": f"{props['major']}.{props['minor']}",
                    "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
                }
            )
    else:
        info["gpu_unavailable_reason"] = reason
    return info


def format_info(info: dict) -> str:
    archs = ", ".join(info["cuda_architectures"]) or "-"
    lines = [
        f"pyfastdl {info['version']}",
        f"CUDA kernels compiled: {'yes (' + archs + ')' if info['cuda_kernels_compiled'] else 'no'}",
        f"OpenMP threads: {info['openmp_threads']}",
        f"CPU instruction set of the kernels: {info['cpu_instruction_set']}",
    ]
    if info["gpus"]:
        for g in info["gpus"]:
            lines.append(f"GPU {g['index']}: {g['name']} (sm_{g['compute_capability'].replace('.', '')}, "
                         f"{g['memory_gib']} GiB)")
    else:
        lines.append(f"GPU: none found ({info['gpu_unavailable_reason']})")
    for dev, fams in info["families"].items():
        lines.append(f"kernel families on {dev}: {', '.join(fams) if fams else 'none'}")
    return "\n".join(lines)
