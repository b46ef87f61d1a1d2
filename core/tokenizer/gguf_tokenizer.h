// Tokenizers from the metadata of a GGUF file (llama.cpp's keys tokenizer.ggml.*):
//   model "gpt2"  -> BpeTokenizer: tokens, merges, token_type, pre (llama.cpp's pre-tokenizer name)
//   model "llama" -> a SentencePiece BPE model built in memory from tokens, scores, token_type
//                    (add_space_prefix, default true), with llama.cpp's handling of special tokens.
// Special and user-defined tokens are matched as llama.cpp does: control tokens with parse_special
// only, user-defined tokens always; control tokens decode to "". BOS is prepended only where the
// file (tokenizer.ggml.add_bos_token) or llama.cpp's default for the pre-tokenizer asks for it;
// bos_id() is -1 elsewhere.
#pragma once

#include <memory>
#include <string>

#include "core/tokenizer/tokenizer.h"

namespace folio {

class GgufFile;

// Throws Error(BadTokenizer) naming the file when the metadata has no usable vocabulary, an
// unknown tokenizer.ggml.model or an unknown tokenizer.ggml.pre.
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& file);
// Also Error(FileNotFound / FileUnreadable); a damaged or truncated GGUF file gives BadTokenizer.
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& path);

}  // namespace folio
