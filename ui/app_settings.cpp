#include "ui/app_settings.h"

#include "ui/attention_modes.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QStandardPaths>
#include <algorithm>

#include <QJsonDocument>
#include <QJsonObject>
#include <QSettings>

#include "ui/default_model.h"

namespace folio::ui {

namespace {
QSettings open_settings() {
  return QSettings(QSettings::NativeFormat, QSettings::UserScope, "Folio", "Folio");
}
}  // namespace

QString AppSettings::effective_model_path() const {
  return model_path.isEmpty() ? default_model_path() : model_path;
}

SamplerParams AppSettings::sampler(uint64_t random_seed) const {
  SamplerParams p;
  p.temperature = static_cast<float>(temperature);
  p.top_k = top_k;
  p.top_p = static_cast<float>(top_p);
  p.min_p = static_cast<float>(min_p);
  p.repetition_penalty = static_cast<float>(repetition_penalty);
  p.seed = seed >= 0 ? static_cast<uint64_t>(seed) : random_seed;
  return p;
}

QString kv_cache_folder() {
  return QStandardPaths::writableLocation(QStandardPaths::CacheLocation) + "/kv";
}

bool AppSettings::needs_reload(const AppSettings& before) const {
  if (backend != before.backend) return true;
  if (backend == "remote")
    return remote_url != before.remote_url || remote_model != before.remote_model ||
           remote_api_key != before.remote_api_key;
  return effective_model_path() != before.effective_model_path() || threads != before.threads ||
         kv_dtype != before.kv_dtype || (backend == "cuda" && gpus != before.gpus);
}

std::vector<int> AppSettings::gpu_list() const {
  std::vector<int> ids;
  for (const QString& part : gpus.split(',', Qt::SkipEmptyParts)) {
    bool ok = false;
    const int id = part.trimmed().toInt(&ok);
    if (ok && id >= 0 && id < 1024 && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  return ids;
}

QString AppSettings::api_key_path() {
  return QStandardPaths::writableLocation(QStandardPaths::AppConfigLocation) + "/remote-api-key";
}

namespace {

QString read_api_key() {
  QFile f(AppSettings::api_key_path());
  if (!f.open(QIODevice::ReadOnly)) return {};
  return QString::fromUtf8(f.read(64 * 1024)).trimmed();
}

// Owner-only from the first byte: a new file is made with 0600 before the key goes in, and an
// existing one is made so before it is written.
void write_api_key(const QString& key) {
  const QString path = AppSettings::api_key_path();
  if (key.isEmpty()) {
    QFile::remove(path);
    return;
  }
  if (key == read_api_key()) return;
  QDir().mkpath(QFileInfo(path).absolutePath());
  constexpr QFileDevice::Permissions kOwnerOnly = QFileDevice::ReadOwner | QFileDevice::WriteOwner;
  if (QFile::exists(path)) QFile::setPermissions(path, kOwnerOnly);
  QFile f(path);
  if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate, kOwnerOnly)) return;
  f.write(key.toUtf8());
}

}  // namespace

AppSettings AppSettings::with_defaults() const {
  AppSettings a;
  a.model_path = model_path;
  a.backend = backend;
  a.threads = threads;
  a.gpus = gpus;
  a.context_tokens = context_tokens;
  a.kv_dtype = kv_dtype;
  a.keep_kv_on_disk = keep_kv_on_disk;
  a.remote_url = remote_url;
  a.remote_model = remote_model;
  a.remote_api_key = remote_api_key;
  return a;
}

QString AppSettings::conversation_json() const {
  QJsonObject o;
  o["context_tokens"] = qint64(context_tokens);
  o["attention_mode"] = attention_mode;
  o["sparse_threshold_tokens"] = qint64(sparse_threshold_tokens);
  o["temperature"] = temperature;
  o["top_p"] = top_p;
  o["top_k"] = top_k;
  o["min_p"] = min_p;
  o["repetition_penalty"] = repetition_penalty;
  o["max_tokens"] = max_tokens;
  o["seed"] = qint64(seed);
  o["system_prompt"] = system_prompt;
  return QString::fromUtf8(QJsonDocument(o).toJson(QJsonDocument::Compact));
}

AppSettings AppSettings::with_conversation(const QString& json) const {
  AppSettings a = *this;
  const QJsonObject o = QJsonDocument::fromJson(json.toUtf8()).object();
  if (o.isEmpty()) return a;
  a.context_tokens = o.value("context_tokens").toInteger(a.context_tokens);
  const QString mode = o.value("attention_mode").toString(a.attention_mode);
  if (attention_mode_names().contains(mode)) a.attention_mode = mode;
  a.sparse_threshold_tokens = o.value("sparse_threshold_tokens").toInteger(a.sparse_threshold_tokens);
  a.temperature = o.value("temperature").toDouble(a.temperature);
  a.top_p = o.value("top_p").toDouble(a.top_p);
  a.top_k = o.value("top_k").toInt(a.top_k);
  a.min_p = o.value("min_p").toDouble(a.min_p);
  a.repetition_penalty = o.value("repetition_penalty").toDouble(a.repetition_penalty);
  a.max_tokens = o.value("max_tokens").toInt(a.max_tokens);
  a.seed = o.value("seed").toInteger(a.seed);
  a.system_prompt = o.value("system_prompt").toString(a.system_prompt);
  return a;
}

AppSettings AppSettings::load() {
  QSettings s = open_settings();
  if (s.value("settings/version", 1).toInt() < 2) {
    // The old defaults, never chosen by the user as far as we can tell: the new defaults apply.
    if (s.contains("sampling/temperature") && qFuzzyCompare(s.value("sampling/temperature").toDouble(), 0.3))
      s.remove("sampling/temperature");
    if (s.contains("sampling/repetition_penalty") &&
        qFuzzyCompare(s.value("sampling/repetition_penalty").toDouble(), 1.1))
      s.remove("sampling/repetition_penalty");
    s.setValue("settings/version", kVersion);
    s.sync();
  }
  AppSettings a;
  a.model_path = s.value("model/path", a.model_path).toString();
  a.backend = s.value("model/backend", a.backend).toString();
  a.threads = s.value("model/threads", a.threads).toInt();
  a.gpus = s.value("model/gpus", a.gpus).toString();
  {
    QStringList kept;  // only indices survive a hand-edited file
    for (int id : a.gpu_list()) kept << QString::number(id);
    a.gpus = kept.join(',');
  }
  a.context_tokens = s.value("model/context_tokens", qint64(a.context_tokens)).toLongLong();
  a.kv_dtype = s.value("model/kv_dtype", a.kv_dtype).toString();
  if (a.kv_dtype != "native" && a.kv_dtype != "q8") a.kv_dtype = "native";
  a.keep_kv_on_disk = s.value("model/keep_kv_on_disk", a.keep_kv_on_disk).toBool();
  a.remote_url = s.value("remote/url", a.remote_url).toString();
  a.remote_model = s.value("remote/model", a.remote_model).toString();
  a.remote_api_key = read_api_key();
  a.attention_mode = s.value("attention/mode", a.attention_mode).toString();
  if (!attention_mode_names().contains(a.attention_mode)) a.attention_mode = "auto";
  a.sparse_threshold_tokens =
      s.value("attention/sparse_threshold_tokens", qint64(a.sparse_threshold_tokens)).toLongLong();
  a.temperature = s.value("sampling/temperature", a.temperature).toDouble();
  a.top_p = s.value("sampling/top_p", a.top_p).toDouble();
  a.top_k = s.value("sampling/top_k", a.top_k).toInt();
  a.min_p = s.value("sampling/min_p", a.min_p).toDouble();
  a.repetition_penalty = s.value("sampling/repetition_penalty", a.repetition_penalty).toDouble();
  a.max_tokens = s.value("sampling/max_tokens", a.max_tokens).toInt();
  a.seed = s.value("sampling/seed", qint64(a.seed)).toLongLong();
  a.system_prompt = s.value("prompt/system", a.system_prompt).toString();
  if (a.backend != "cpu" && a.backend != "cuda" && a.backend != "remote") a.backend = "cpu";
  return a;
}

void AppSettings::save() const {
  QSettings s = open_settings();
  s.setValue("model/path", model_path);
  s.setValue("model/backend", backend);
  s.setValue("model/threads", threads);
  s.setValue("model/gpus", gpus);
  s.setValue("model/context_tokens", qint64(context_tokens));
  s.setValue("model/kv_dtype", kv_dtype);
  s.setValue("model/keep_kv_on_disk", keep_kv_on_disk);
  s.setValue("remote/url", remote_url);
  s.setValue("remote/model", remote_model);
  write_api_key(remote_api_key);
  s.setValue("attention/mode", attention_mode);
  s.setValue("attention/sparse_threshold_tokens", qint64(sparse_threshold_tokens));
  s.setValue("sampling/temperature", temperature);
  s.setValue("sampling/top_p", top_p);
  s.setValue("sampling/top_k", top_k);
  s.setValue("sampling/min_p", min_p);
  s.setValue("sampling/repetition_penalty", repetition_penalty);
  s.setValue("sampling/max_tokens", max_tokens);
  s.setValue("sampling/seed", qint64(seed));
  s.setValue("prompt/system", system_prompt);
  s.setValue("settings/version", kVersion);
  s.sync();
}

}  // namespace folio::ui
