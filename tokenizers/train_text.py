"""Train a sentencepiece text tokenizer for the unified vocabulary.

    python tokenizers/train_text.py input=[a.txt,b.jsonl] out=tok/text.model vocab_size=512 [jsonl_field=text]
    python tokenizers/train_text.py shapes_corpus=20000 out=tok/text.model vocab_size=512

Inputs: .txt (one document per line) and .jsonl (text under jsonl_field), or (shapes_corpus=N)
the built-in generated shapes corpus. The model: byte_fallback (any text is encodable, no <unk> in practice),
unk=0 bos=1 eos=2 and NO pad id (pad_id=-1): padding is the vocabulary's own <pad> special.
Normalisation is "identity" without whitespace collapsing, so decode(encode(text)) == text.
The vocabulary size is a soft limit: a corpus too small for it yields a smaller model.
"""

from dataclasses import dataclass, field
from pathlib import Path

from unimodal.cli import parse_config
from unimodal.config import ConfigError
from unimodal.data.text_corpus import read_documents, shapes_text_corpus

MIN_VOCAB_SIZE = 256 + 3 + 1  # byte pieces, unk/bos/eos, at least one character of the corpus
MODEL_TYPES = ("bpe", "unigram")


@dataclass
class TrainTextConfig:
    input: list[str] = field(default_factory=list)  # .txt / .jsonl files
    shapes_corpus: int = 0                # or: train on N generated shapes documents
    out: str = ""                         # output model path, ending in .model
    vocab_size: int = 512                 # a soft limit: a small corpus yields a smaller model
    model_type: str = "bpe"               # bpe | unigram
    jsonl_field: str = "text"             # field holding the text in .jsonl files
    seed: int = 0                         # seed of the shapes corpus
    max_sentences: int = 2_000_000        # sentencepiece samples at most this many lines

    def validate(self) -> None:
        if bool(self.input) == bool(self.shapes_corpus):
            raise ConfigError("give exactly one of input=[FILE,...] and shapes_corpus=N")
        if self.shapes_corpus < 0:
            raise ConfigError(f"shapes_corpus={self.shapes_corpus}: must be >= 1")
        if Path(self.out).suffix != ".model":
            raise ConfigError(f"out={self.out!r}: must end in .model")
        if self.vocab_size < MIN_VOCAB_SIZE:
            raise ConfigError(f"vocab_size={self.vocab_size}: must be >= {MIN_VOCAB_SIZE} "
                              "(256 byte-fallback pieces + unk/bos/eos + the corpus's characters)")
        if self.model_type not in MODEL_TYPES:
            raise ConfigError(f"model_type={self.model_type!r}: choose one of {list(MODEL_TYPES)}")


def main(argv=None):
    args = parse_config(TrainTextConfig, argv, __doc__, __file__)
    out = Path(args.out)
    if args.input:
        documents, where = read_documents(args.input, args.jsonl_field), ", ".join(args.input)
    else:
        documents, where = shapes_text_corpus(args.shapes_corpus, args.seed), "the shapes corpus"
    train_sentencepiece(documents, where, out, args)
    size = spm_processor(out).get_piece_size()
    print(f"wrote {out} ({args.model_type}, {size} pieces) from {where}")
    return out


def spm_processor(path: Path):
    import sentencepiece as spm  # lazy: --help and config errors work without it

    return spm.SentencePieceProcessor(model_file=str(path))


def train_sentencepiece(documents, where: str, out: Path, args: TrainTextConfig) -> None:
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
