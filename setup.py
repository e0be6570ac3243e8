from setuptools import find_packages, setup

# The design card puts each stage in a top-level folder; they install as subpackages of `scratchlm`
# (`scratchlm.corpus`, `scratchlm.modeling`, `scratchlm.tokenization`, `scratchlm.training`, ...).
STAGES = ["corpus", "modeling", "tokenization", "training", "model_cards", "inference"]
# `scratchlm-serve`: an OpenAI-compatible server on FastAPI + uvicorn (the tests talk to it with `openai` and `httpx`).
SERVE = ["fastapi>=0.110", "uvicorn>=0.29", "pydantic>=2"]

setup(
    name="scratchlm",
    version="0.1.0",
    description="Build a language model from scratch and fine-tune it, the Hugging Face way.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=["scratchlm"]
    + [f"scratchlm.{stage}" for stage in STAGES]
    + [f"scratchlm.{stage}.{sub}" for stage in STAGES for sub in find_packages(stage)],
    package_dir={"scratchlm": "scratchlm", **{f"scratchlm.{stage}": stage for stage in STAGES}},
    package_data={"scratchlm.training": ["metrics/*/*.py"], "scratchlm.model_cards": ["*.md.j2", "*.jinja"]},
    install_requires=[
        "torch>=2.4,<3",
        "transformers>=5.24,<6",
        "tokenizers>=0.22,<1",
        "datasets>=4,<6",
        "evaluate>=0.4.5,<1",
        "peft>=0.18,<1",
        "trl>=1.16,<2",  # DPOTrainer (--task dpo); 1.16 is the version tested with transformers 5.24
        "accelerate>=1.10,<2",
        "safetensors>=0.6",
        "huggingface_hub>=1.0",
        "tensorboard>=2.18",
        "matplotlib>=3.8",
        "pyyaml>=6",
        "scikit-learn>=1.4",
        "datasketch>=2,<3",
        "sacrebleu>=2.4,<3",
        "rouge_score>=0.1.2",
        "torchdata>=0.11",  # the stateful DataLoader: a streamed run resumes at its saved position
    ],
    extras_require={
        "dev": ["pytest>=8", "hypothesis>=6.100", "ruff>=0.6", *SERVE, "openai>=1.0", "httpx", "gguf>=0.17"],
        "serve": SERVE,
        "gguf": ["gguf>=0.17"],
    },
    entry_points={
        "console_scripts": [
            "scratchlm-init=scratchlm.modeling.cli:init_main",
            "scratchlm-convert=scratchlm.modeling.cli:convert_main",
            "scratchlm-tokenizer=scratchlm.tokenization.cli:main",
            "scratchlm-pretrain=scratchlm.training.pretrain:main",
            "scratchlm-prepare=scratchlm.training.prepare:main",
            "scratchlm-finetune=scratchlm.training.finetune:main",
            "scratchlm-publish=scratchlm.model_cards.cli:main",
            "scratchlm-chat=scratchlm.inference.chat:main",
            "scratchlm-serve=scratchlm.inference.serve:main",
            "scratchlm-export=scratchlm.inference.export:main",
            "scratchlm-generate=scratchlm.inference.generate:main",
            "scratchlm-qa=scratchlm.inference.qa:main",
            "scratchlm-cloze=scratchlm.training.cloze:main",
        ]
    },
)
