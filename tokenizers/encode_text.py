"""Turn .txt / .jsonl files into webdataset text shards for the training mixture.

    python tokenizers/encode_text.py input=[a.txt,b.jsonl] out_dir=shards/text vocab=runs/vocab
    python tokenizers/encode_text.py input=[a.jsonl] out_dir=shards/text text_tokenizer=tok/text.model
    python tokenizers/encode_text.py input=[a.txt] out_dir=shards/raw raw=true   # tokenized on the fly

Inputs: .txt (one document per line) and .jsonl (text under jsonl_field). Exactly one of vocab,
text_tokenizer and raw=true says what is stored: each sample of `shard-XXXXXX.tar` holds `ids.npy`
(int32 token ids, no bos/eos) and, unless keep_text=false, the raw `txt`; with raw=true only
`txt`. `encode_text_meta.json` records counts and the tokenizer's fingerprint, which the loader
checks. Point a `kind: text` source of the data config at `<out_dir>/shard-{000000..NNNNNN}.tar`.
"""

from dataclasses import dataclass, field

from unimodal.cli import parse_config
from unimodal.config import ConfigError
from unimodal.data.text_corpus import read_documents
from unimodal.data.text_shards import write_text_shards
from unimodal.model.vocabulary import Vocabulary, VocabularyConfig


@dataclass
class EncodeTextConfig:
    input: list[str] = field(default_factory=list)  # .txt / .jsonl files
    out_dir: str = ""                     # where shard-XXXXXX.tar files go
    vocab: str = ""                       # vocabulary folder (Vocabulary.save) whose text ids to use
    text_tokenizer: str = ""              # or: a sentencepiece .model or local Hugging Face folder
    raw: bool = False                     # or: store raw text only (no ids)
    jsonl_field: str = "text"             # field holding the text in .jsonl files
    shard_size: int = 10000               # documents per shard
    keep_text: bool = True                # store the raw txt beside ids.npy (false: ids only)

    def validate(self) -> None:
        if not self.input:
            raise ConfigError("input is required: input=[a.txt,b.jsonl]")
        if not self.out_dir:
            raise ConfigError("out_dir is required (where the shards go)")
        chosen = [k for k in ("vocab", "text_tokenizer", "raw") if getattr(self, k)]
        if len(chosen) != 1:
            raise ConfigError(f"give exactly one of vocab=DIR, text_tokenizer=PATH and raw=true "
                              f"(got {chosen or 'none'})")
        if self.shard_size < 1:
            raise ConfigError(f"shard_size={self.shard_size}: must be >= 1")
        if self.raw and not self.keep_text:
            raise ConfigError("raw=true stores only the text; it cannot go with keep_text=false")


def main(argv=None):
    cfg = parse_config(EncodeTextConfig, argv, __doc__, __file__)
    if cfg.vocab:
        vocab = Vocabulary.load(cfg.vocab)
    elif cfg.text_tokenizer:
        vocab = Vocabulary.build(VocabularyConfig.text_only(cfg.text_tokenizer))
    else:
        vocab = None
    documents = read_documents(cfg.input, cfg.jsonl_field)
    meta = write_text_shards(documents, cfg.out_dir, vocab, cfg.shard_size,
                             keep_text=cfg.keep_text)
    what = f"{meta['tokens']} tokens" if meta["pretokenized"] else "raw text"
    print(f"wrote {meta['documents']} documents ({what}) in {meta['shards']} shards to {cfg.out_dir}")
    return meta


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
