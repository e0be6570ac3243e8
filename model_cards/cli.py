"""`scratchlm-publish`: publish a trained ScratchLM model (decoder or encoder-decoder) or LoRA adapter directory to the
Hugging Face Hub.

    scratchlm-publish MODEL_DIR --repo_id USER/NAME [--private] [--dry_run] [--base_model_id USER/BASE]
    scratchlm-publish --model_dir MODEL_DIR --repo_id USER/NAME ...          (the same, as named options)

What is checked, staged and uploaded is described in `scratchlm.model_cards.publish`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scratchlm.cli import command, move_bare_argument, parse_args

from .publish import format_file_list, publish


@dataclass
class PublishArguments:
    model_dir: str = field(metadata={"help": "the trained model (or LoRA adapter) directory; may be given first, bare"})
    repo_id: str = field(metadata={"help": "the Hub repository, USER/NAME or ORGANIZATION/NAME"})
    private: bool = field(default=False, metadata={"help": "create the repository as private"})
    dry_run: bool = field(default=False, metadata={"help": "stage the folder and list it; touch no network"})
    staging_dir: str | None = field(default=None, metadata={"help": "where to stage the files (default MODEL_DIR-hub)"})
    base_model_id: str | None = field(
        default=None, metadata={"help": "Hub id of the base model of a LoRA adapter trained from a local model"}
    )
    commit_message: str | None = field(default=None, metadata={"help": "the commit message on the Hub"})


@command("scratchlm-publish")
def main(argv: list[str] | None = None) -> None:
    argv = move_bare_argument(argv, name="model_dir")
    (args,) = parse_args([PublishArguments], argv, description=__doc__.split("\n\n")[0])
    result = publish(
        args.model_dir, args.repo_id, private=args.private, dry_run=args.dry_run, staging_dir=args.staging_dir,
        base_model_id=args.base_model_id, commit_message=args.commit_message,
    )
    heading = "would upload (dry run, nothing sent)" if not result.uploaded else "uploaded"
    print(f"{heading} to {result.repo_id}, staged in {result.staging_dir}:")
    print(format_file_list(result.files))
    if result.uploaded:
        print(f"https://huggingface.co/{result.repo_id}")


if __name__ == "__main__":
    main()
