"""The training commands an export prints and writes next to its files (``TRAINING.md``).

ms-swift resolves relative image paths against the working directory or ``ROOT_IMAGE_DIR``,
so every command sets ``ROOT_IMAGE_DIR`` to the version folder and can be run from anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

SFT_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"
"""Model named in the printed commands (any ms-swift multimodal model works)."""

_COMMANDS = (
    # (file, ms-swift command, what for)
    ("swift_messages.jsonl", "sft", "supervised fine-tuning on crops (caption answers)"),
    ("swift_grounding.jsonl", "sft", "grounding fine-tuning on full images (Qwen2/2.5-VL)"),
    ("swift.jsonl", "pt", "pre-training form: image + caption as one assistant turn"),
)


def swift_commands(version_dir: str, files: Sequence[str]) -> list[tuple[str, str]]:
    """``[(what for, shell command)]`` for the ms-swift files among ``files``.

    Args:
        version_dir: the version folder as it should appear in the command (a path, or a
            shell variable such as ``"$V"``).
        files: the export's files, relative to the version folder.
    """
    out = []
    have = set(files)
    for name, cmd, what in _COMMANDS:
        if name not in have:
            continue
        line = (
            f'ROOT_IMAGE_DIR="{version_dir}" swift {cmd} --model {SFT_MODEL} '
            f'--dataset "{version_dir}/{name}"'
        )
        if f"val/{name}" in have:
            line += f' --val_dataset "{version_dir}/val/{name}"'
        out.append((what, line))
    return out


def training_markdown(files: Sequence[str]) -> str:
    """``TRAINING.md``: which file for which trainer, with commands that set ROOT_IMAGE_DIR."""
    lines = [
        "# Training with this export",
        "",
        "Set `V` to this folder (wherever it was copied to); every path in the dataset files",
        "is relative to it (`ROOT_IMAGE_DIR` for ms-swift, the dataset root elsewhere).",
        "",
        "```bash",
        'V="$(pwd)"   # run inside this folder, or give its path',
    ]
    for what, line in swift_commands("$V", files):
        lines += [f"# {what}", line]
    lines += ["```", ""]
    if "qwen_vl/grounding.jsonl" in files:
        lines += [
            "`qwen_vl/grounding.jsonl` is Qwen-VL (v1) text (`<ref>`/`<box>` in 0..1000): only",
            "for Qwen-VL v1; Qwen2-VL and Qwen2.5-VL train on `swift_grounding.jsonl`.",
            "",
        ]
    if "yolo/data.yaml" in files:
        lines += ["YOLO: `yolo train data=$V/yolo/data.yaml`.", ""]
    if "odvg/od.jsonl" in files:
        lines += [
            "Open-GroundingDino: dataset root `$V`, `odvg/od.jsonl` + `odvg/label_map.json`",
            "(or `odvg/vg.jsonl`), validation `odvg/coco_val.json`, `label_list` from",
            "`odvg/label_list.json`.",
            "",
        ]
    if "labelstudio.json" in files:
        lines += [
            "Label Studio: `LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`",
            "`LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=$V`, add a Local Files storage with path",
            "`$V/images`, import `labelstudio.json` with `labelstudio_config.xml`.",
            "",
        ]
    return "\n".join(lines)
