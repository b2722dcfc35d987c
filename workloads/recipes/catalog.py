"""The built-in recipe catalog (installed and updated by ``manage.py install_recipes``).

Each entry is the content of one RecipeVersion plus the Recipe's card fields. Editing an entry
here and re-running the installer creates a new version; workloads keep the version they used.
Shell-free commands: parameters reach the container as argv items or env variables, never
spliced into a shell line, so a parameter cannot inject commands.
"""

from __future__ import annotations

from typing import Any

HF_TOKEN_PARAM = {"name": "hf_token", "type": "secret", "label": "Hugging Face token",
                  "help": "A stored secret; needed for gated models. Never shown again once stored."}

BUILTIN_RECIPES: list[dict[str, Any]] = [
    {
        "slug": "brain-pod",
        "name": "Brain pod",
        "category": "notebook",
        "icon": "NB",
        "description": "A persistent workspace with JupyterLab and SSH. Your files survive restarts; "
                       "it stops itself when the GPU has been idle for an hour.",
        "image": "quay.io/jupyter/pytorch-notebook:cuda12-2024-10-07",
        "image_kind": "curated",
        "parameters": [
            {"name": "ssh_public_key", "type": "string", "label": "SSH public key",
             "help": "Added to authorized_keys (ssh-ed25519 AAAA… you@host)."},
        ],
        "defaults": {"gpu_class": "A10", "gpu_count": 1, "min_gpu_count": 1, "max_gpu_count": 8,
                     "lifecycle": "service", "max_duration_minutes": None,
                     "idle": {"enabled": True, "threshold_pct": 5, "window_minutes": 60}},
        "template": {
            "command": ["start-notebook.py"],
            "args": ["--ServerApp.root_dir=/home/jovyan/work"],
            "env": {"JUPYTER_TOKEN": "{{ access_token }}", "PUBLIC_KEY": "{{ ssh_public_key }}", "GRANT_SUDO": "yes"},
            "ports": [{"port": 8888, "protocol": "http"}, {"port": 22, "protocol": "tcp"}],
            "volumes": [{"kind": "persistent", "size_gb": 100, "mount_path": "/home/jovyan/work"}],
        },
    },
    {
        "slug": "lora-finetune",
        "name": "LoRA / QLoRA fine-tuning",
        "category": "training",
        "icon": "FT",
        "description": "Fine-tune a common open base model on your dataset with LoRA adapters "
                       "(or QLoRA in 4-bit). Writes the adapter to your output URI, then stops.",
        "image": "nvcr.io/nvidia/pytorch:24.08-py3",
        "image_kind": "ngc",
        "parameters": [
            {"name": "base_model", "type": "choice", "label": "Base model", "default": "meta-llama/Llama-3.1-8B",
             "choices": ["meta-llama/Llama-3.1-8B", "mistralai/Mistral-7B-v0.3", "Qwen/Qwen2.5-7B", "google/gemma-2-9b"]},
            {"name": "dataset_uri", "type": "uri", "label": "Dataset URI", "required": True,
             "default": "hf://datasets/tatsu-lab/alpaca", "schemes": ["s3", "gs", "hf", "https"],
             "help": "s3://, gs://, hf:// or https:// (JSONL with instruction/output)"},
            {"name": "epochs", "type": "int", "label": "Epochs", "default": 3, "min": 1, "max": 100},
            {"name": "rank", "type": "int", "label": "LoRA rank", "default": 16, "min": 1, "max": 512},
            {"name": "learning_rate", "type": "float", "label": "Learning rate", "default": 0.0002, "min": 1e-7, "max": 0.1},
            {"name": "qlora", "type": "bool", "label": "QLoRA (4-bit base model)", "default": False},
            {"name": "output_uri", "type": "uri", "label": "Output URI", "required": True,
             "default": "s3://my-models/lora-adapter", "schemes": ["s3", "gs", "hf"]},
            HF_TOKEN_PARAM,
        ],
        "defaults": {"gpu_class": "A100", "gpu_count": 1, "min_gpu_count": 1, "max_gpu_count": 8,
                     "lifecycle": "job", "max_duration_minutes": 720,
                     "idle": {"enabled": True, "threshold_pct": 5, "window_minutes": 30}},
        "template": {
            "command": ["torchrun", "--nproc_per_node={{ gpu_count }}", "-m", "provisioner_recipes.lora_train"],
            "args": ["--base-model", "{{ base_model }}", "--dataset", "{{ dataset_uri }}", "--epochs", "{{ epochs }}",
                     "--lora-rank", "{{ rank }}", "--learning-rate", "{{ learning_rate }}", "--output", "{{ output_uri }}",
                     {"when": "qlora", "args": ["--load-in-4bit"]}],
            "env": {"HF_TOKEN": "{{ hf_token }}", "HF_HOME": "/scratch/hf"},
            "ports": [],
            "volumes": [{"kind": "ephemeral", "size_gb": 200, "mount_path": "/scratch"}],
        },
    },
    {
        "slug": "llm-inference",
        "name": "LLM inference",
        "category": "inference",
        "icon": "API",
        "description": "An OpenAI-compatible endpoint served by vLLM. Tensor parallelism follows the "
                       "GPU count; add replicas for burst capacity.",
        "image": "vllm/vllm-openai:v0.6.3",
        "image_kind": "docker",
        "parameters": [
            {"name": "model", "type": "string", "label": "Model", "required": True,
             "default": "meta-llama/Llama-3.1-8B-Instruct", "help": "A Hugging Face model id (org/name)."},
            {"name": "max_context", "type": "int", "label": "Max context (tokens)", "default": 8192, "min": 512, "max": 262144},
            {"name": "gpu_memory_utilization", "type": "float", "label": "GPU memory utilization", "default": 0.9, "min": 0.1, "max": 0.98},
            HF_TOKEN_PARAM,
        ],
        "defaults": {"gpu_class": "A100", "gpu_count": 1, "min_gpu_count": 1, "max_gpu_count": 8,
                     "allowed_gpu_counts": [1, 2, 4, 8], "lifecycle": "service", "max_duration_minutes": None,
                     "idle": {"enabled": False, "threshold_pct": 5, "window_minutes": 60}},
        "template": {
            "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
            "args": ["--model", "{{ model }}", "--max-model-len", "{{ max_context }}",
                     "--tensor-parallel-size", "{{ gpu_count }}", "--gpu-memory-utilization", "{{ gpu_memory_utilization }}",
                     "--host", "0.0.0.0", "--port", "8000"],
            "env": {"HF_TOKEN": "{{ hf_token }}", "HF_HOME": "/models"},
            "ports": [{"port": 8000, "protocol": "http"}],
            "volumes": [{"kind": "ephemeral", "size_gb": 200, "mount_path": "/models"}],
        },
    },
    {
        "slug": "image-generation",
        "name": "Stable Diffusion / Flux",
        "category": "image",
        "icon": "IMG",
        "description": "Image generation with SDXL or FLUX.1 behind ComfyUI, with a web UI and an HTTP API.",
        "image": "ghcr.io/ai-dock/comfyui:v2-cuda-12.1.1-base-22.04",
        "image_kind": "docker",
        "parameters": [
            {"name": "model", "type": "choice", "label": "Model", "default": "black-forest-labs/FLUX.1-schnell",
             "choices": ["black-forest-labs/FLUX.1-schnell", "black-forest-labs/FLUX.1-dev",
                         "stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-diffusion-3.5-large"]},
            {"name": "precision", "type": "choice", "label": "Precision", "default": "fp16", "choices": ["fp16", "fp8", "bf16"]},
            HF_TOKEN_PARAM,
        ],
        "defaults": {"gpu_class": "A40", "gpu_count": 1, "min_gpu_count": 1, "max_gpu_count": 2,
                     "lifecycle": "service", "max_duration_minutes": 480,
                     "idle": {"enabled": True, "threshold_pct": 5, "window_minutes": 30}},
        "template": {
            "command": ["/opt/ai-dock/bin/init.sh"],
            "args": [],
            "env": {"PROVISIONING_MODEL": "{{ model }}", "MODEL_PRECISION": "{{ precision }}",
                    "HF_TOKEN": "{{ hf_token }}", "COMFYUI_PORT_HOST": "8188"},
            "ports": [{"port": 8188, "protocol": "http"}],
            "volumes": [{"kind": "ephemeral", "size_gb": 100, "mount_path": "/workspace"}],
        },
    },
    {
        "slug": "whisper-batch",
        "name": "Whisper batch transcription",
        "category": "batch",
        "icon": "ASR",
        "description": "Transcribe every audio file under an input URI with OpenAI Whisper and write "
                       "transcripts (JSON + SRT) to the output URI.",
        "image": "nvcr.io/nvidia/pytorch:24.08-py3",
        "image_kind": "ngc",
        "parameters": [
            {"name": "input_uri", "type": "uri", "label": "Input URI", "required": True,
             "default": "s3://my-audio/incoming/", "schemes": ["s3", "gs", "https"]},
            {"name": "output_uri", "type": "uri", "label": "Output URI", "required": True,
             "default": "s3://my-audio/transcripts/", "schemes": ["s3", "gs"]},
            {"name": "model_size", "type": "choice", "label": "Model size", "default": "large-v3",
             "choices": ["tiny", "base", "small", "medium", "large-v3", "large-v3-turbo"]},
            {"name": "language", "type": "string", "label": "Language (blank = detect)", "default": ""},
        ],
        "defaults": {"gpu_class": "L4", "gpu_count": 1, "min_gpu_count": 1, "max_gpu_count": 4,
                     "lifecycle": "job", "max_duration_minutes": 240,
                     "idle": {"enabled": True, "threshold_pct": 5, "window_minutes": 30}},
        "template": {
            "command": ["python", "-m", "provisioner_recipes.whisper_batch"],
            "args": ["--input", "{{ input_uri }}", "--output", "{{ output_uri }}", "--model", "{{ model_size }}",
                     "--workers", "{{ gpu_count }}"],
            "env": {"WHISPER_LANGUAGE": "{{ language }}"},
            "ports": [],
            "volumes": [{"kind": "ephemeral", "size_gb": 50, "mount_path": "/scratch"}],
        },
    },
    {
        "slug": "custom",
        "name": "Custom container",
        "category": "custom",
        "icon": "</>",
        "description": "Any image (Docker Hub, NGC nvcr.io or a curated base) with your own command, env "
                       "and ports. Save it as your own recipe with a typed parameter form.",
        "image": "nvcr.io/nvidia/pytorch:24.08-py3",
        "image_kind": "curated",
        "parameters": [
            {"name": "script", "type": "string", "label": "Command to run", "default": "nvidia-smi && sleep infinity",
             "help": "Passed to bash -lc inside the container."},
        ],
        "defaults": {"gpu_class": "A10", "gpu_count": 1, "min_gpu_count": 1, "max_gpu_count": 8,
                     "lifecycle": "job", "max_duration_minutes": 120,
                     "idle": {"enabled": True, "threshold_pct": 5, "window_minutes": 30}},
        "template": {
            "command": ["bash", "-lc", "{{ script }}"],
            "args": [],
            "env": {},
            "ports": [],
            "volumes": [],
        },
    },
]

CARD_FIELDS = ("slug", "name", "category", "description")
VERSION_FIELDS = ("image", "image_kind", "parameters", "defaults", "template")
CATEGORIES = {"notebook": "Notebook", "training": "Training", "inference": "Inference", "image": "Image generation",
              "batch": "Batch", "custom": "Custom"}
ICONS = {e["category"]: e["icon"] for e in BUILTIN_RECIPES}
