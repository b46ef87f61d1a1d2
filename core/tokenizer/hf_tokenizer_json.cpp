// Reading a Hugging Face tokenizer.json (byte-level BPE) into a BpeVocabulary.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/common/error.h"
#include "core/common/input_limits.h"
#include "core/common/mapped_file.h"
#include "core/tokenizer/bpe_tokenizer.h"

namespace folio {

namespace {

using nlohmann::json;

constexpr int64_t kMaxTokenId = 1 << 24;

[[noreturn]] void bad(const std::string& source, const std::string& what) {
  throw Error(ErrorCode::BadTokenizer, source + ": " + what +
                                           "; use the tokenizer.json that came with the model (Folio reads "
                                           "byte-level BPE tokenizers such as those of Llama 3, Qwen2 and SmolLM)");
}

std::string type_of(const json& j) {
  if (!j.is_object()) return {};
  auto it = j.find("type");
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool bool_or(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// "text" or {"content": "text"} (tokenizer_config.json writes both), else "".
std::string token_text(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object()) {
    auto it = j.find("content");
    if (it != j.end() && it->is_string()) return it->get<std::string>();
  }
  return {};
}

void add_pre_tokenizer(const json& pt, std::vector<PreTokenizerStep>& steps, bool& byte_level,
                       const std::string& source, int depth) {
  if (pt.is_null()) return;
  if (depth > 8) bad(source, "the pre_tokenizer nests too deeply");
  const std::string type = type_of(pt);
  if (type == "Sequence") {
    auto it = pt.find("pretokenizers");
    if (it == pt.end() || !it->is_array()) bad(source, "a Sequence pre_tokenizer has no \"pretokenizers\" list");
    for (const json& p : *it) add_pre_tokenizer(p, steps, byte_level, source, depth + 1);
  } else if (type == "Split") {
    PreTokenizerStep step;
    auto pattern = pt.find("pattern");
    if (pattern == pt.end() || !pattern->is_object()) bad(source, "a Split pre_tokenizer has no pattern");
    if (auto r = pattern->find("Regex"); r != pattern->end() && r->is_string()) {
      step.pattern = r->get<std::string>();
    } else if (auto s = pattern->find("String"); s != pattern->end() && s->is_string()) {
      step.pattern = s->get<std::string>();
      step.literal = true;
    } else {
      bad(source, "a Split pre_tokenizer's pattern is neither {\"Regex\": ...} nor {\"String\": ...}");
    }
    const std::string behavior = pt.value("behavior", std::string("Isolated"));
    if (behavior == "Removed") step.remove_matches = true;
    else if (behavior != "Isolated") bad(source, "the Split behavior \"" + printable_for_message(behavior) + "\" is not supported");
    if (bool_or(pt, "invert", false)) bad(source, "an inverted Split pre_tokenizer is not supported");
    steps.push_back(std::move(step));
  } else if (type == "ByteLevel") {
    byte_level = true;
    if (bool_or(pt, "add_prefix_space", true)) steps.push_back({PreTokenizerStep::Kind::PrefixSpace, {}});
    if (bool_or(pt, "use_regex", true))
      steps.push_back({PreTokenizerStep::Kind::Split, std::string(gpt2_pre_tokenizer_regex())});
  } else if (type == "Digits") {
    // Digits split on numeric characters (Rust's char::is_numeric: \p{N}), one by one or in runs.
    steps.push_back({PreTokenizerStep::Kind::Split, bool_or(pt, "individual_digits", false) ? "\\p{N}" : "\\p{N}+"});
  } else {
    bad(source, "the pre_tokenizer \"" + (type.empty() ? std::string("(no type)") : printable_for_message(type)) + "\" is not supported");
  }
}

void check_normalizer(const json& n, const std::string& source) {
  if (n.is_null()) return;
  const std::string type = type_of(n);
  // NFC is left out, as llama.cpp does: text that is already NFC (nearly all) is unchanged.
  if (type == "NFC") return;
  if (type == "Sequence") {
    auto it = n.find("normalizers");
    if (it != n.end() && it->is_array()) {
      for (const json& x : *it) check_normalizer(x, source);
      return;
    }
  }
  bad(source, "the normalizer \"" + (type.empty() ? std::string("(no type)") : printable_for_message(type)) + "\" is not supported");
}

// The special token a TemplateProcessing post-processor puts before the text, or -1.
int32_t template_bos(const json& pp) {
  if (!pp.is_object()) return -1;
  if (type_of(pp) == "Sequence") {
    auto it = pp.find("processors");
    if (it == pp.end() || !it->is_array()) return -1;
    for (const json& p : *it)
      if (int32_t id = template_bos(p); id >= 0) return id;
    return -1;
  }
  if (type_of(pp) != "TemplateProcessing") return -1;
  auto single = pp.find("single");
  if (single == pp.end() || !single->is_array() || single->empty()) return -1;
  const json& first = single->front();
  auto st = first.find("SpecialToken");
  if (!first.is_object() || st == first.end() || !st->is_object()) return -1;
  auto name = st->find("id");
  if (name == st->end() || !name->is_string()) return -1;
  auto specials = pp.find("special_tokens");
  if (specials == pp.end() || !specials->is_object()) return -1;
  auto entry = specials->find(name->get<std::string>());
  if (entry == specials->end() || !entry->is_object()) return -1;
  auto ids = entry->find("ids");
  if (ids == entry->end() || !ids->is_array() || ids->empty() || !ids->front().is_number_integer()) return -1;
  const int64_t id = ids->front().get<int64_t>();
  return id >= 0 && id < kMaxTokenId ? static_cast<int32_t>(id) : -1;
}

json parse_json(std::string_view text, const std::string& source, const limits::JsonLimits& bounds) {
  limits::check_json_bounds(text, bounds, source, ErrorCode::BadTokenizer);
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) bad(source, "the file is not valid JSON (truncated or damaged?)");
  return j;
}

std::unique_ptr<BpeTokenizer> parse(std::string_view json_text, const std::string& source,
                                    std::string_view config_text, const std::string& config_source) {
  const json root = parse_json(json_text, source, limits::kTokenizerJson);
  if (!root.is_object()) bad(source, "the file is not a tokenizer.json (its top level is not an object)");

  auto model_it = root.find("model");
  if (model_it == root.end() || !model_it->is_object()) bad(source, "it has no \"model\"");
  const json& model = *model_it;
  const std::string model_type = type_of(model);
  if (!model_type.empty() && model_type != "BPE")
    bad(source, "the model type is \"" + printable_for_message(model_type) + "\", not BPE");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it != model.end() && it->is_string() && !it->get<std::string>().empty())
      bad(source, std::string("model.") + key + " is not supported");
  }

  BpeVocabulary vocab;
  std::unordered_map<std::string, int32_t> ids;

  auto vocab_it = model.find("vocab");
  if (vocab_it == model.end() || !vocab_it->is_object() || vocab_it->empty())
    bad(source, "model.vocab is missing or empty");
  int64_t max_id = -1;
  for (auto it = vocab_it->begin(); it != vocab_it->end(); ++it) {
    if (!it.value().is_number_integer()) bad(source, "model.vocab has a non-integer id for \"" + printable_for_message(it.key()) + "\"");
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id >= kMaxTokenId) bad(source, "model.vocab has the impossible id " + std::to_string(id));
    max_id = std::max(max_id, id);
  }
  if (static_cast<size_t>(max_id) >= 2 * vocab_it->size() + 65536)
    bad(source, "model.vocab has ids up to " + std::to_string(max_id) + " for " + std::to_string(vocab_it->size()) + " tokens");
  vocab.tokens.resize(static_cast<size_t>(max_id + 1));
  for (auto it = vocab_it->begin(); it != vocab_it->end(); ++it) {
    const auto id = static_cast<int32_t>(it.value().get<int64_t>());
    BpeVocabulary::Token& t = vocab.tokens[static_cast<size_t>(id)];
    if (!t.text.empty()) bad(source, "model.vocab gives id " + std::to_string(id) + " to two tokens");
    t.text = it.key();
    ids[t.text] = id;
  }

  auto merges_it = model.find("merges");
  if (merges_it == model.end() || !merges_it->is_array())
    bad(source, "model.merges is missing (a BPE tokenizer needs its merges)");
  vocab.merges.reserve(merges_it->size());
  for (const json& m : *merges_it) {
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ', 1);
      if (space == std::string::npos) bad(source, "the merge \"" + printable_for_message(s) + "\" is not two tokens separated by a space");
      vocab.merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      vocab.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      bad(source, "model.merges has an entry that is neither \"a b\" nor [\"a\", \"b\"]");
    }
  }
  vocab.ignore_merges = bool_or(model, "ignore_merges", false);

  if (auto added = root.find("added_tokens"); added != root.end() && !added->is_null()) {
    if (!added->is_array()) bad(source, "added_tokens is not a list");
    for (const json& a : *added) {
      if (!a.is_object()) bad(source, "added_tokens has an entry that is not an object");
      auto id_it = a.find("id");
      auto content_it = a.find("content");
      if (id_it == a.end() || !id_it->is_number_integer() || content_it == a.end() || !content_it->is_string())
        bad(source, "an added token lacks its id or content");
      const int64_t id = id_it->get<int64_t>();
      const std::string content = content_it->get<std::string>();
      if (id < 0 || id >= kMaxTokenId || static_cast<size_t>(id) >= vocab.tokens.size() + added->size() + 65536)
        bad(source, "the added token \"" + printable_for_message(content) + "\" has the impossible id " + std::to_string(id));
      if (content.empty()) bad(source, "the added token " + std::to_string(id) + " has empty content");
      if (static_cast<size_t>(id) >= vocab.tokens.size()) vocab.tokens.resize(static_cast<size_t>(id) + 1);
      if (auto other = ids.find(content); other != ids.end() && other->second != id)
        bad(source, "the added token \"" + printable_for_message(content) + "\" has id " + std::to_string(id) + " but the vocabulary has it as " +
                        std::to_string(other->second));
      BpeVocabulary::Token& t = vocab.tokens[static_cast<size_t>(id)];
      if (!t.text.empty() && t.text != content) ids.erase(t.text);
      t.text = content;
      t.kind = bool_or(a, "special", false) ? TokenKind::Control : TokenKind::UserDefined;
      t.lstrip = bool_or(a, "lstrip", false);
      t.rstrip = bool_or(a, "rstrip", false);
      ids[content] = static_cast<int32_t>(id);
    }
  }
  for (BpeVocabulary::Token& t : vocab.tokens)
    if (t.text.empty()) t.kind = TokenKind::Unused;  // an id nothing names

  check_normalizer(root.contains("normalizer") ? root["normalizer"] : json(), source);
  bool byte_level = false;
  if (auto pt = root.find("pre_tokenizer"); pt != root.end())
    add_pre_tokenizer(*pt, vocab.pre_tokenizer, byte_level, source, 0);
  if (!byte_level)
    bad(source, "it is not a byte-level BPE tokenizer (no ByteLevel pre_tokenizer); for SentencePiece-style models "
                "use their tokenizer.model");

  const auto find_id = [&](const std::string& text) -> int32_t {
    if (text.empty()) return -1;
    auto it = ids.find(text);
    return it == ids.end() ? -1 : it->second;
  };
  if (auto unk = model.find("unk_token"); unk != model.end() && unk->is_string()) vocab.unk_id = find_id(unk->get<std::string>());

  // BOS: the post-processor's template, else tokenizer_config.json. EOS: tokenizer_config.json,
  // else a usual end-of-text marker.
  vocab.bos_id = template_bos(root.contains("post_processor") ? root["post_processor"] : json());
  vocab.add_bos = vocab.bos_id >= 0;
  if (!config_text.empty()) {
    const json config = parse_json(config_text, config_source, limits::kTokenizerConfig);
    if (!config.is_object()) bad(config_source, "the file is not a tokenizer_config.json (not an object)");
    if (vocab.bos_id < 0) {
      if (auto b = config.find("bos_token"); b != config.end()) vocab.bos_id = find_id(token_text(*b));
      vocab.add_bos = vocab.bos_id >= 0 && bool_or(config, "add_bos_token", false);
    }
    if (auto e = config.find("eos_token"); e != config.end()) vocab.eos_id = find_id(token_text(*e));
  }
  if (vocab.eos_id < 0)
    for (const char* marker : {"<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"})
      if ((vocab.eos_id = find_id(marker)) >= 0) break;
  if (vocab.bos_id >= static_cast<int64_t>(vocab.tokens.size())) vocab.bos_id = -1;

  return std::make_unique<BpeTokenizer>(std::move(vocab), source);
}

}  // namespace

std::unique_ptr<BpeTokenizer> parse_hf_tokenizer_json(std::string_view json_text, const std::string& source,
                                                      std::string_view config_text) {
  try {
    return parse(json_text, source, config_text, source + " (tokenizer_config.json)");
  } catch (const json::exception& e) {
    bad(source, std::string("unexpected content (") + e.what() + ")");
  }
}

std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::string& path) {
  const std::string text = read_text_file(path);
  std::error_code ec;
  const std::filesystem::path config_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  std::string config_text;
  if (std::filesystem::is_regular_file(config_path, ec)) config_text = read_text_file(config_path.string());
  try {
    return parse(text, path, config_text, config_path.string());
  } catch (const json::exception& e) {
    bad(path, std::string("unexpected content (") + e.what() + ")");
  }
}

}  // namespace folio
