"""Train a sentencepiece text tokenizer for the unified vocabulary.

    python tokenizers/train_text.py --input a.txt b.jsonl --out tok/text.model --vocab-size 512 [--jsonl-field text]
    python tokenizers/train_text.py --shapes-corpus 20000 --out tok/text.model --vocab-size 512

Inputs: .txt (one document per line) and .jsonl (text under --jsonl-field), or the built-in
generated shapes corpus. The model: byte_fallback (any text is encodable, no <unk> in practice),
unk=0 bos=1 eos=2 and NO pad id (pad_id=-1): padding is the vocabulary's own <pad> special.
Normalisation is "identity" without whitespace collapsing, so decode(encode(text)) == text.
The vocabulary size is a soft limit: a corpus too small for it yields a smaller model.
"""

import argparse
from pathlib import Path

from unimodal.data.text_corpus import read_documents, shapes_text_corpus

MIN_VOCAB_SIZE = 256 + 3 + 1  # byte pieces, unk/bos/eos, at least one character of the corpus


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", help=".txt / .jsonl files")
    source.add_argument("--shapes-corpus", type=int, metavar="N", help="train on N generated shapes documents")
    parser.add_argument("--out", required=True, help="output model path, ending in .model")
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--model-type", choices=("bpe", "unigram"), default="bpe")
    parser.add_argument("--jsonl-field", default="text", help="field holding the text in .jsonl files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shapes corpus")
    parser.add_argument("--max-sentences", type=int, default=2_000_000,
                        help="sentencepiece samples at most this many lines of a large corpus")
    args = parser.parse_args(argv)

    out = Path(args.out)
    if out.suffix != ".model":
        parser.error(f"--out {args.out}: must end in .model")
    if args.vocab_size < MIN_VOCAB_SIZE:
        parser.error(f"--vocab-size {args.vocab_size}: must be >= {MIN_VOCAB_SIZE} "
                     "(256 byte-fallback pieces + unk/bos/eos + the corpus's characters)")
    if args.input:
        documents, where = read_documents(args.input, args.jsonl_field), ", ".join(args.input)
    else:
        documents, where = shapes_text_corpus(args.shapes_corpus, args.seed), "the shapes corpus"
    train_sentencepiece(documents, where, out, args)
    size = spm_processor(out).get_piece_size()
    print(f"wrote {out} ({args.model_type}, {size} pieces) from {where}")
    return out


def spm_processor(path: Path):
    import sentencepiece as spm  # lazy: --help and argument errors work without it

    return spm.SentencePieceProcessor(model_file=str(path))


def train_sentencepiece(documents, where: str, out: Path, args) -> None:
    import sentencepiece as spm

    # sentencepiece trains on lines; a multi-line document is split so no line holds a newline.
    lines = (line for doc in documents for line in doc.splitlines() if line.strip())
    first = next(lines, None)
    if first is None:
        raise ValueError(f"empty corpus: no text in {where}")
    # sentencepiece turns an error raised while reading the corpus into a RuntimeError; keep the
    # original (it names the file and line) to raise instead.
    read_errors = []

    def sentences():
        try:
            yield first
            yield from lines
        except Exception as err:
            read_errors.append(err)
            raise

    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences(), model_prefix=str(out.with_suffix("")),
            vocab_size=args.vocab_size, model_type=args.model_type, byte_fallback=True,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1, hard_vocab_limit=False,
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            input_sentence_size=args.max_sentences, shuffle_input_sentence=True, minloglevel=1)
    except RuntimeError:
        if read_errors:
            raise read_errors[0] from None
        raise


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
