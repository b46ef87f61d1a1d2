// Limits on the work a file can make Folio do, in one place with the reason for each (issue 22).
// A file is untrusted: its headers state counts and sizes that drive allocation and parsing, so
// each is checked against the file's own size and against what a real model needs before any
// memory is reserved for it. Every limit is far above what real files use (the reason says by how
// much) and far below what would exhaust a desktop's memory.
//
// Elsewhere, each beside the code it guards:
// - documents: only regular files (FIFOs, devices, sockets refused by type, symbolic link loops
//   named), a text document at most LoadOptions::max_text_file_bytes (256 MiB), source files of a
//   folder at most max_source_file_bytes (1 MiB) each (core/docs/ingest.h), its .gitignore and
//   .git/info/exclude files at most kMaxPatternFileBytes (1 MiB) each (core/docs/source_tree.cpp);
// - whole-file reads at most kMaxWholeFileBytes (1 GiB, core/common/mapped_file.h);
// - token counts of documents: counted in pieces of kCountPieceBytes and only up to a bound past
//   the context, so a document many times the context costs memory and time in proportion to the
//   context (core/tokenizer/tokenizer.h, core/chat/conversation.cpp);
// - GGUF tensor and key counts, dimensions and tensor extents (core/model/gguf.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/common/error.h"

namespace folio::limits {

// A JSON file parsed into a tree: each value costs tens of bytes of memory and each level of
// nesting a frame of the parser, so size, nesting and the number of values are checked by a scan
// that allocates nothing, before the parser runs.
struct JsonLimits {
  const char* what;  // "config.json", "safetensors header" ... for messages
  size_t max_bytes;
  int max_depth;
  size_t max_values;
};

// A safetensors header: ~100 bytes and 8 values a tensor, 4 levels deep (object, tensor, shape).
// 100 MB is the format's own limit; 4M values is 500K tensors, 50x the largest single file.
inline constexpr JsonLimits kSafetensorsHeader{"safetensors header", 100'000'000, 8, size_t{1} << 22};
// config.json: a few KiB, 5 levels deep at most (text_config.rope_scaling.*) in real models.
inline constexpr JsonLimits kModelConfig{"config.json", size_t{16} << 20, 32, size_t{1} << 20};
// model.safetensors.index.json: a weight_map entry a tensor (the largest models: ~100K).
inline constexpr JsonLimits kSafetensorsIndex{"model.safetensors.index.json", size_t{64} << 20, 8, size_t{1} << 22};
// tokenizer.json: the largest real ones (262K-token vocabularies with their merges) are ~35 MB
// and ~2M values; tokenizer_config.json lists added tokens, far fewer.
inline constexpr JsonLimits kTokenizerJson{"tokenizer.json", size_t{128} << 20, 64, size_t{1} << 23};
inline constexpr JsonLimits kTokenizerConfig{"tokenizer_config.json", size_t{64} << 20, 64, size_t{1} << 23};

// Throws Error(code) naming `source` when text is larger, deeper or holds more values than
// `limits` allow, before anything parses it. Does not check that it is valid JSON.
void check_json_bounds(std::string_view text, const JsonLimits& limits, const std::string& source, ErrorCode code);

// GGUF metadata: arrays are the vocabulary (tokens, scores, types, merges: 262,144 entries in the
// largest real vocabularies), so one array holds at most 4M items and all arrays together 16M
// (each item is kept as a double or a string: 8-32 bytes). A string (a chat template is the
// longest, ~10-100 KiB) holds at most 16 MiB; a key or a tensor name at most 64 KiB (the format's
// own limit for keys; tensor names are under 100 bytes in practice).
inline constexpr uint64_t kMaxGgufArrayItems = uint64_t{1} << 22;
inline constexpr uint64_t kMaxGgufArrayItemsTotal = uint64_t{1} << 24;
inline constexpr uint64_t kMaxGgufStringBytes = uint64_t{16} << 20;
inline constexpr uint64_t kMaxGgufNameBytes = uint64_t{64} << 10;

// A model's context length from its header (max_position_embeddings): real models claim up to
// ~10M tokens; past 2^27 it cannot be a real model (and would overflow derived sizes).
inline constexpr int64_t kMaxModelContext = int64_t{1} << 27;

}  // namespace folio::limits

namespace folio {

// A name read from a file (a tensor name, a metadata key, a file name) made safe to echo in a
// message: control characters (C0, DEL, C1) and bytes that are not UTF-8 become \xNN, and a name
// longer than max_bytes is cut with "...". A terminal never receives an escape sequence or a NUL.
std::string printable_name(std::string_view name, size_t max_bytes = 200);

// Length (1-4) of the valid UTF-8 sequence at s[i], or 0 where none starts there (a stray or
// truncated byte, an overlong form, a surrogate, past U+10FFFF).
size_t utf8_sequence_length(std::string_view s, size_t i);

}  // namespace folio
