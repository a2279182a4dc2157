"""Turn .txt / .jsonl files into webdataset text shards for the training mixture.

    python tokenizers/encode_text.py --input a.txt b.jsonl --out-dir shards/text --vocab runs/vocab
    python tokenizers/encode_text.py --input a.jsonl --out-dir shards/text --text-tokenizer tok/text.model
    python tokenizers/encode_text.py --input a.txt --out-dir shards/raw --raw   # tokenized on the fly

Inputs: .txt (one document per line) and .jsonl (text under --jsonl-field). Each sample of
`shard-XXXXXX.tar` holds `ids.npy` (int32 token ids, no bos/eos) and, unless --no-text, the raw
`txt`; with --raw only `txt`. `encode_text_meta.json` records counts and the tokenizer's
fingerprint, which the loader checks. Point a `kind: text` source of the data config at
`<out-dir>/shard-{000000..NNNNNN}.tar`.
"""

import argparse

from unimodal.data.text_corpus import read_documents
from unimodal.data.text_shards import write_text_shards
from unimodal.model.vocabulary import Vocabulary, VocabularyConfig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--input", nargs="+", required=True, help=".txt / .jsonl files")
    parser.add_argument("--out-dir", required=True, help="where shard-XXXXXX.tar files go")
    tokenizer = parser.add_mutually_exclusive_group(required=True)
    tokenizer.add_argument("--vocab", help="vocabulary folder (Vocabulary.save) whose text ids to use")
    tokenizer.add_argument("--text-tokenizer", help="sentencepiece .model or local Hugging Face folder")
    tokenizer.add_argument("--raw", action="store_true", help="store raw text only (no ids)")
    parser.add_argument("--jsonl-field", default="text", help="field holding the text in .jsonl files")
    parser.add_argument("--shard-size", type=int, default=10000, help="documents per shard")
    parser.add_argument("--no-text", action="store_true", help="store ids only, not the raw text")
    args = parser.parse_args(argv)
    if args.shard_size < 1:
        parser.error(f"--shard-size {args.shard_size}: must be >= 1")
    if args.raw and args.no_text:
        parser.error("--raw stores only the text; it cannot be combined with --no-text")

    if args.vocab:
        vocab = Vocabulary.load(args.vocab)
    elif args.text_tokenizer:
        vocab = Vocabulary.build(VocabularyConfig.text_only(args.text_tokenizer))
    else:
        vocab = None
    documents = read_documents(args.input, args.jsonl_field)
    meta = write_text_shards(documents, args.out_dir, vocab, args.shard_size,
                             keep_text=not args.no_text)
    what = f"{meta['tokens']} tokens" if meta["pretokenized"] else "raw text"
    print(f"wrote {meta['documents']} documents ({what}) in {meta['shards']} shards to {args.out_dir}")
    return meta


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
