#include "ui/demo.h"

#include <QDir>
#include <QFile>
#include <QStandardPaths>

static void folio_init_qrc() {
  Q_INIT_RESOURCE(folio);
}

namespace folio::ui {

namespace {

QString resource_of(DemoDocument which) {
  return which == DemoDocument::None ? QString() : ":/folio/demo/" + demo_file_name(which);
}

}  // namespace

void init_resources() {
  static const bool done = [] {
    folio_init_qrc();
    return true;
  }();
  (void)done;
}

DemoDocument demo_for_model(const QString& model_path) {
  // The model's folder, or a file in it.
  const QStringList parts = QDir::cleanPath(model_path).split('/');
  return parts.contains("folio-needle") ? DemoDocument::PlantedFacts : DemoDocument::Manual;
}

QString demo_file_name(DemoDocument which) {
  switch (which) {
    case DemoDocument::None: return {};
    case DemoDocument::Manual: return QStringLiteral("halcyon-h40-manual.md");
    case DemoDocument::PlantedFacts: return QStringLiteral("planted-facts.md");
  }
  return {};
}

QString demo_document_path(DemoDocument which) {
  init_resources();
  QFile res(resource_of(which));
  if (which == DemoDocument::None || !res.open(QIODevice::ReadOnly)) return {};
  const QByteArray bytes = res.readAll();
  QString dir = QStandardPaths::writableLocation(QStandardPaths::AppLocalDataLocation);
  if (dir.isEmpty()) dir = QDir::tempPath() + "/folio";
  dir += "/demo";
  QDir().mkpath(dir);
  const QString path = dir + "/" + demo_file_name(which);
  QFile out(path);
  // Rewrite only when it differs, so the document's hash (and a cached KV prefix) stays stable.
  if (out.open(QIODevice::ReadOnly)) {
    if (out.readAll() == bytes) return path;
    out.close();
  }
  if (!out.open(QIODevice::WriteOnly | QIODevice::Truncate) || out.write(bytes) != bytes.size()) return {};
  return path;
}

QStringList demo_questions(DemoDocument which) {
  switch (which) {
    case DemoDocument::None: return {};
    case DemoDocument::Manual:
      return {
          // Each answered right by the default model (SmolLM2-135M-Instruct) at the default settings
          // (tst_gui demo_questions_are_answered_right_at_the_defaults). It got E-17 and resetting the
          // pairing code wrong even greedily, so those were replaced by questions it answers.
          QObject::tr("How long do the batteries in the outdoor sensor last?"),
          QObject::tr("How long is the warranty?"),
          QObject::tr("At what time are firmware updates installed?"),
      };
    case DemoDocument::PlantedFacts:
      // As planted by tools/needle/make_demo.py (resources/demo/planted-facts.json): folio-needle
      // was trained on these phrasings, so they are not translated.
      return {
          QStringLiteral("What is the secret code of the blue door?"),
          QStringLiteral("What is the special magic number for the silver harbor?"),
          QStringLiteral("What is the value of key 3f9a-1c07?"),
          QStringLiteral("Which code locks the copper lantern?"),
      };
  }
  return {};
}

QList<QStringList> demo_answers(DemoDocument which) {
  if (which != DemoDocument::Manual) return {};
  // From the manual: sections 5, 10 and 7.
  return {{"14 months"}, {"3 years", "3-year", "three years"}, {"03:00", "3:00", "3 a.m.", "3 am"}};
}

QString welcome_markdown(const QString& model_name, bool tiny_model, DemoDocument demo) {
  QString md = QObject::tr(
      "## Welcome to Folio\n\n"
      "Chat with long documents using a language model that runs on this computer. The whole document goes "
      "into the model's context, and the panel on the right shows what that costs: prefill progress, time to "
      "first token, tokens per second and memory.\n\n");
  if (demo == DemoDocument::PlantedFacts)
    md += QObject::tr(
        "The long demo document, **planted-facts.md** (about 12,000 tokens of the King James Bible and the Debian "
        "Reference with four facts planted in it), is loaded for *folio-needle*, Folio's own long-context "
        "retrieval model. Ask one of these questions, or add your documents with **File ▸ Add files…** or by "
        "dropping files and folders onto the window:\n");
  else if (demo == DemoDocument::Manual)
    md += QObject::tr(
        "The demo document, the manual of the (fictional) **Halcyon H-40 weather station**, is loaded. Ask one of "
        "these questions, type your own, or add your documents with **File ▸ Add files…** or by dropping files "
        "and folders onto the window:\n");
  else
    md += QObject::tr(
        "Add documents with **File ▸ Add files…** or by dropping files and folders onto the window, "
        "then ask a question.\n");
  if (tiny_model)
    md += "\n" + QObject::tr(
                     "> The model in use, *%1*, is a tiny story generator for testing: it answers with a "
                     "story, not with facts. For real answers fetch the default model, SmolLM2-135M-Instruct "
                     "(about 98 MB, Apache-2.0), once with `folio-fetch-model` (in a source checkout: "
                     "`python3 tools/fetch_model.py`) and "
                     "restart Folio, or choose a model in **Settings**.\n")
                     .arg(model_name);
  return md;
}

}  // namespace folio::ui
