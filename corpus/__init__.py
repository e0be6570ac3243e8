"""The corpus stage: raw text in, clean documents and a token store out (`scratchlm.corpus`).

It sits below tokenization and training: it reads any source, makes documents, cleans and deduplicates them, and
keeps packed token ids in a compact store; it takes typed settings of its own, never a command's argument group.
"""
