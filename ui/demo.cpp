#include "ui/demo.h"

#include <QDir>
#include <QFile>
#include <QStandardPaths>

static void folio_init_qrc() {
  Q_INIT_RESOURCE(folio);
}

namespace folio::ui {

namespace {
constexpr const char* kDemoResource = ":/folio/demo/halcyon-h40-manual.md";
}

void init_resources() {
  static const bool done = [] {
    folio_init_qrc();
    return true;
  }();
  (void)done;
}

QString demo_document_path() {
  init_resources();
  QFile res(kDemoResource);
  if (!res.open(QIODevice::ReadOnly)) return {};
  const QByteArray bytes = res.readAll();
  QString dir = QStandardPaths::writableLocation(QStandardPaths::AppLocalDataLocation);
  if (dir.isEmpty()) dir = QDir::tempPath() + "/folio";
  dir += "/demo";
  QDir().mkpath(dir);
  const QString path = dir + "/halcyon-h40-manual.md";
  QFile out(path);
  // Rewrite only when it differs, so the document's hash (and a cached KV prefix) stays stable.
  if (out.open(QIODevice::ReadOnly)) {
    if (out.readAll() == bytes) return path;
    out.close();
  }
  if (!out.open(QIODevice::WriteOnly | QIODevice::Truncate) || out.write(bytes) != bytes.size()) return {};
  return path;
}

QStringList demo_questions() {
  return {
      QObject::tr("How long do the batteries in the outdoor sensor last?"),
      QObject::tr("What does error code E-17 mean, and how do I fix it?"),
      QObject::tr("How do I reset the pairing code?"),
  };
}

QString welcome_markdown(const QString& model_name, bool tiny_model, bool demo_loaded) {
  QString md = QObject::tr(
      "## Welcome to Folio\n\n"
      "Chat with long documents using a language model that runs on this computer. The whole document goes "
      "into the model's context, and the panel on the right shows what that costs: prefill progress, time to "
      "first token, tokens per second and memory.\n\n");
  if (demo_loaded)
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
                     "story, not with facts. For real answers run `python3 tools/fetch_model.py` once and "
                     "restart Folio, or choose a model in **Settings**.\n")
                     .arg(model_name);
  return md;
}

}  // namespace folio::ui
