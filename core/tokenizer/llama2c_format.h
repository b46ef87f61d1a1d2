// Reading llama2.c's tokenizer.bin without throwing, for load_tokenizer()'s guess of the format.
// Internal to core/tokenizer; the public entry is llama2c_tokenizer_to_spm().
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/tokenizer/sentencepiece_tokenizer.h"

namespace folio {

// The vocabulary as a SentencePiece BPE model, or nullopt with *why saying what is wrong.
std::optional<SpmModelBuilder> parse_llama2c_tokenizer(std::string_view file_bytes, std::string* why);

}  // namespace folio
