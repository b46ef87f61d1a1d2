// folio-retrieval: how often context packing keeps the part of a document that answers a question.
//   folio-retrieval (--model PATH | --tokenizer PATH) --doc PATH --fixture FILE [--budgets 32768,131072]
//                   [--reserve N] [--misses] [--min-share P,P...] [--exclude PREFIX]
//   folio-retrieval --doc PATH --dump      (one line per section: page or file:lines, its text on one line)
// The document is read by the app's loader (core/docs) and packed by core/chat's pack_documents, as
// the app and folio-cli pack it. A fixture line is "EXPECTED<TAB>QUESTION" ('#' starts a comment):
// EXPECTED is PAGE[#TEXT], a PDF page number in the file (1-based) and text printed on it (which
// checks that the fixture belongs to this edition), or FILE#TEXT of a source tree (a kept window of
// FILE must hold TEXT). --exclude PREFIX leaves a tree's files under PREFIX out (the fixtures). --store FILE reads
// through the app's store (a PDF read before comes from there, not parsed again). Prints the read, index
// and pack times and a table of hits per budget; exits 1 when a budget's share of hits is below --min-share (one share,
// or one per budget).
#include <QCoreApplication>
#include <QString>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "app/cli_args.h"
#include "core/chat/context_packing.h"
#include "core/common/error.h"
#include "core/docs/ingest.h"
#include "core/docs/prompt_layout.h"
#include "core/model/model_loader.h"
#include "core/store/stored_documents.h"
#include "core/tokenizer/tokenizer.h"

namespace {

using folio::Error;
using folio::ErrorCode;

const char* kUsage =
    "usage: folio-retrieval (--model PATH | --tokenizer PATH) --doc PATH --fixture FILE\n"
    "                       [--budgets N,N...] [--reserve N] [--misses] [--min-share P,P...]\n"
    "                       [--exclude PREFIX] [--store FILE]\n"
    "       folio-retrieval --doc PATH --dump\n";

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

struct Question {
  std::string question;
  int page = 0;        // PDF: 1-based page in the file
  std::string file;    // source tree: the file the answer is in
  std::string needle;  // text on the answer's page, or on the line of the file the answer is on
  int fixture_line = 0;
};

std::vector<Question> read_fixture(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::FileNotFound, "fixture not found: " + path);
  std::vector<Question> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty() || line[0] == '#') continue;
    const size_t tab = line.find('\t');
    if (tab == std::string::npos)
      throw Error(ErrorCode::BadArgument, path + ":" + std::to_string(n) + ": expected EXPECTED<TAB>QUESTION");
    Question q;
    q.question = line.substr(tab + 1);
    q.fixture_line = n;
    const std::string expected = line.substr(0, tab);
    const size_t hash = expected.find('#');
    const std::string where = expected.substr(0, hash);
    if (hash != std::string::npos) q.needle = expected.substr(hash + 1);
    if (!where.empty() && where.find_first_not_of("0123456789") == std::string::npos && where.size() < 7)
      q.page = std::stoi(where);
    else
      q.file = where;
    if (q.page <= 0 && (q.file.empty() || q.needle.empty()))
      throw Error(ErrorCode::BadArgument,
                  path + ":" + std::to_string(n) + ": \"" + expected + "\" is neither PAGE[#TEXT] nor FILE#TEXT");
    out.push_back(std::move(q));
  }
  return out;
}

// Whether a section (of the document, or packed) is the one that answers q.
bool answers(const folio::chat::Section& s, const Question& q) {
  if (!s.note.empty()) return false;
  if (q.page > 0 && s.page_index != q.page - 1) return false;
  if (q.page <= 0 && s.file != q.file) return false;
  return s.text.find(q.needle) != std::string::npos;
}

bool holds_answer(const std::vector<folio::chat::Document>& packed, const Question& q) {
  for (const auto& d : packed)
    for (const auto& s : d.sections)
      if (answers(s, q)) return true;
  return false;
}

int run(folio::cli::Args& args) {
  std::string model, tokenizer, doc_path, fixture, store;
  std::vector<int64_t> budgets = {32768, 131072};
  int64_t reserve = 512;
  bool misses = false, dump = false;
  std::vector<double> min_shares;     // one for all budgets, or one per budget
  std::vector<std::string> excluded;  // source trees: files under these prefixes are left out
  while (!args.done()) {
    const std::string a = args.next();
    if (a == "--model")
      model = args.value(a);
    else if (a == "--tokenizer")
      tokenizer = args.value(a);
    else if (a == "--doc")
      doc_path = args.value(a);
    else if (a == "--fixture")
      fixture = args.value(a);
    else if (a == "--reserve")
      reserve = args.integer(a, 0, 1 << 20);
    else if (a == "--misses")
      misses = true;
    else if (a == "--dump")
      dump = true;
    else if (a == "--exclude")
      excluded.push_back(args.value(a));
    else if (a == "--store")
      store = args.value(a);
    else if (a == "--min-share") {
      const std::string v = args.value(a);
      for (size_t i = 0; i <= v.size();) {
        size_t j = v.find(',', i);
        if (j == std::string::npos) j = v.size();
        size_t used = 0;
        double x = -1.0;
        try {
          x = std::stod(v.substr(i, j - i), &used);
        } catch (const std::exception&) {
        }
        if (used != j - i || x < 0.0 || x > 1.0)
          throw folio::cli::UsageError("--min-share takes shares from 0 to 1 separated by commas, not " + v);
        min_shares.push_back(x);
        i = j + 1;
      }
    } else if (a == "--budgets") {
      budgets.clear();
      std::string v = args.value(a);
      for (size_t i = 0; i <= v.size();) {
        size_t j = v.find(',', i);
        if (j == std::string::npos) j = v.size();
        try {
          budgets.push_back(std::stoll(v.substr(i, j - i)));
        } catch (const std::exception&) {
          throw folio::cli::UsageError("--budgets takes token counts separated by commas, not " + v);
        }
        i = j + 1;
      }
    } else if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      throw folio::cli::UsageError("unknown argument " + a);
    }
  }
  if (doc_path.empty()) throw folio::cli::UsageError("--doc PATH is required");

  double t0 = now_ms();
  // --store: read through the app's store, as the app reads (a PDF read before is not parsed again).
  std::unique_ptr<folio::store::Database> db;
  std::unique_ptr<folio::store::StoredDocuments> kept;
  folio::docs::LoadOptions lo;
  if (!store.empty()) {
    db = std::make_unique<folio::store::Database>(QString::fromStdString(store));
    kept = std::make_unique<folio::store::StoredDocuments>(*db);
    lo.document_cache = kept.get();
  }
  folio::chat::Document doc =
      folio::docs::chat_document(folio::docs::load_document(QString::fromStdString(doc_path), lo));
  const double read_ms = now_ms() - t0;
  const char* read_how = !kept                ? ""
                         : kept->hits() > 0   ? " (its text from the store)"
                         : kept->misses() > 0 ? " (parsed, its text kept in the store)"
                                              : " (not a PDF: read)";
  std::erase_if(doc.sections, [&](const folio::chat::Section& s) {
    return std::any_of(excluded.begin(), excluded.end(), [&](const std::string& p) { return s.file.starts_with(p); });
  });
  if (dump) {
    for (const auto& s : doc.sections) {
      std::string head = s.text;
      std::replace(head.begin(), head.end(), '\n', ' ');
      if (s.page_index >= 0)
        std::printf("%d\t%s\n", s.page_index + 1, head.c_str());
      else
        std::printf("%s:%d-%d\t%s\n", s.file.c_str(), s.first_line, s.last_line, head.c_str());
    }
    return 0;
  }
  if (fixture.empty()) throw folio::cli::UsageError("--fixture FILE is required");
  if (min_shares.size() > 1 && min_shares.size() != budgets.size())
    throw folio::cli::UsageError("--min-share takes one share, or one per budget");
  if (model.empty() && tokenizer.empty()) throw folio::cli::UsageError("give --model or --tokenizer");
  const std::vector<Question> questions = read_fixture(fixture);
  for (const Question& q : questions)
    if (std::none_of(doc.sections.begin(), doc.sections.end(), [&](const auto& s) { return answers(s, q); }))
      throw Error(ErrorCode::BadArgument,
                  fixture + ":" + std::to_string(q.fixture_line) +
                      ": the document has no such page or file, or not that text on it; the fixture belongs to another "
                      "version of the document");
  const auto tok = folio::load_tokenizer(tokenizer.empty() ? folio::find_tokenizer(model) : tokenizer);

  t0 = now_ms();
  const folio::chat::PackingIndex index({doc}, [&](const std::string& text) {
    return static_cast<int64_t>(tok->encode(text, /*add_bos=*/false).size());
  });
  const double index_ms = now_ms() - t0;
  std::printf("document: %s, %zu sections, %zu packing units, %lld tokens laid out\n", doc.title.c_str(),
              doc.sections.size(), index.unit_count(), static_cast<long long>(index.total_tokens()));
  std::printf("read: %.0f ms%s; index (units, token counts, BM25): %.0f ms\n", read_ms, read_how, index_ms);
  std::printf("questions: %zu (%s); budget = context - %lld tokens (question, template, answer) - headroom for follow-ups (a tenth, at most 2,048)\n\n", questions.size(),
              fixture.c_str(), static_cast<long long>(reserve));
  std::printf(
      "| context | hits | share | packed tokens (mean) | units kept (mean) | pack ms (median) | pack ms (max) |\n"
      "|---|---|---|---|---|---|---|\n");
  bool short_of_target = false;
  for (size_t b = 0; b < budgets.size(); ++b) {
    const int64_t ctx = budgets[b];
    // What the app's first packing gets: the context less the reserve and the headroom it leaves
    // for follow-ups.
    const int64_t budget = folio::chat::packing_budget(ctx, reserve, 0);
    const double min_share = min_shares.empty() ? 0.0 : min_shares[std::min(b, min_shares.size() - 1)];
    int hits = 0;
    int64_t packed_tokens = 0, kept_units = 0;
    std::vector<double> times;
    std::vector<const Question*> missed;
    for (const Question& q : questions) {
      const double t = now_ms();
      const folio::chat::PackResult r =
          folio::chat::pack_documents(index, q.question, budget, folio::chat::FitMode::Relevant);
      times.push_back(now_ms() - t);
      packed_tokens += r.estimated_tokens;
      kept_units += r.kept_sections;
      if (holds_answer(r.docs, q))
        ++hits;
      else
        missed.push_back(&q);
    }
    std::sort(times.begin(), times.end());
    const double share = questions.empty() ? 0.0 : static_cast<double>(hits) / questions.size();
    const double n = std::max<double>(1.0, static_cast<double>(questions.size()));
    std::printf("| %lld | %d/%zu | %.1f%% | %.0f | %.0f | %.1f | %.1f |\n", static_cast<long long>(ctx), hits,
                questions.size(), 100.0 * share, packed_tokens / n, kept_units / n,
                times.empty() ? 0.0 : times[times.size() / 2], times.empty() ? 0.0 : times.back());
    if (misses)
      for (const Question* q : missed) {
        // where the best unit holding the answer ranks by BM25 alone
        const std::vector<double> score = index.bm25().scores(q->question);
        double best = -1.0;
        size_t u = 0;
        for (const auto& d : index.units())
          for (const auto& s : d.sections) {
            if (answers(s, *q)) best = std::max(best, score[u]);
            ++u;
          }
        const auto rank = std::count_if(score.begin(), score.end(), [&](double x) { return x > best; }) + 1;
        std::printf("  missed at %lld (fixture line %d, answer ranked %lld by BM25): %s\n", static_cast<long long>(ctx),
                    q->fixture_line, static_cast<long long>(rank), q->question.c_str());
      }
    if (share < min_share) {
      std::printf("  below the target of %.0f%% at %lld\n", 100.0 * min_share, static_cast<long long>(ctx));
      short_of_target = true;
    }
  }
  return short_of_target ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Qt PDF's document is a QObject: an application object first (given none of our arguments).
  int qt_argc = 1;
  char qt_name[] = "folio-retrieval";
  char* qt_argv[] = {qt_name, nullptr};
  QCoreApplication qt_app(qt_argc, qt_argv);
  folio::cli::Args args(argc, argv);
  try {
    return run(args);
  } catch (const folio::cli::UsageError& e) {
    std::fprintf(stderr, "folio-retrieval: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "folio-retrieval: error: %s\n", e.what());
    return 1;
  }
}
