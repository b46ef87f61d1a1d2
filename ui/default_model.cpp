#include "ui/default_model.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QStandardPaths>

namespace folio::ui {

QString model_cache_dir() {
  // tools/fetch_model.py: $XDG_CACHE_HOME/folio/models, else ~/.cache/folio/models.
  const QString xdg = qEnvironmentVariable("XDG_CACHE_HOME");
  const QString base = xdg.isEmpty() ? QDir::homePath() + "/.cache" : xdg;
  return base + "/folio/models";
}

QString embedded_model_path() {
  const QString rel = "models/stories260K/stories260K.bin";
  QStringList roots;
  const QString env = qEnvironmentVariable("FOLIO_SOURCE_DIR");
  if (!env.isEmpty()) roots << env + "/resources";
  roots << QStringLiteral(FOLIO_SOURCE_DIR_STR) + "/resources";
  if (QCoreApplication::instance() != nullptr) {
    const QString app_dir = QCoreApplication::applicationDirPath();
    roots << app_dir + "/../share/folio" << app_dir + "/../resources" << app_dir + "/../../resources";
  }
  for (const QString& root : roots) {
    const QFileInfo f(root + "/" + rel);
    if (f.isFile()) return QDir::cleanPath(f.absoluteFilePath());
  }
  return {};
}

QString default_model_path() {
  const QDir cache(model_cache_dir());
  const QStringList ggufs = cache.entryList({"*.gguf"}, QDir::Files, QDir::Name);
  for (const QString& name : ggufs)
    if (name.contains("SmolLM2", Qt::CaseInsensitive)) return cache.absoluteFilePath(name);
  return embedded_model_path();
}

}  // namespace folio::ui
