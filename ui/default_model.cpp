#include "ui/default_model.h"

#include <QDir>
#include <QFileInfo>
#include <QStandardPaths>

#include "core/common/resource_dir.h"

namespace folio::ui {

QString model_cache_dir() {
  // tools/fetch_model.py: $XDG_CACHE_HOME/folio/models, else ~/.cache/folio/models.
  const QString xdg = qEnvironmentVariable("XDG_CACHE_HOME");
  const QString base = xdg.isEmpty() ? QDir::homePath() + "/.cache" : xdg;
  return base + "/folio/models";
}

QString embedded_model_path() {
  // share/folio beside the executable's bin/ (installed), or the build tree's share/folio (links
  // into resources/); no source path is compiled in.
  const std::optional<std::filesystem::path> p = folio::bundled_model_path("stories260K");
  return p ? QDir::cleanPath(QString::fromStdString(p->string())) : QString();
}

QString default_model_path() {
  const QDir cache(model_cache_dir());
  const QStringList ggufs = cache.entryList({"*.gguf"}, QDir::Files, QDir::Name);
  for (const QString& name : ggufs)
    if (name.contains("SmolLM2", Qt::CaseInsensitive)) return cache.absoluteFilePath(name);
  return embedded_model_path();
}

}  // namespace folio::ui
