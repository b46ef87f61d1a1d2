#include "ui/settings_dialog.h"


#include <QDialogButtonBox>
#include <QFutureWatcher>
#include <QtConcurrent/QtConcurrentRun>
#include <QFileDialog>
#include <QDir>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLocale>
#include <QPushButton>
#include <QThread>
#include <QVBoxLayout>
#include <algorithm>
#include <limits>

#include "ui/attention_modes.h"
#include "ui/default_model.h"
#if FOLIO_UI_REMOTE
#include "ui/remote_connection.h"
#endif

namespace folio::ui {

SettingsDialog::SettingsDialog(const AppSettings& settings, QWidget* parent) : QDialog(parent) {
  setWindowTitle(tr("Folio Settings"));
  setObjectName("settingsDialog");
  // Two columns (model and attention | sampling and system prompt): the dialog fits a 640 px high screen.
  auto* layout = new QVBoxLayout(this);
  auto* columns = new QHBoxLayout();
  auto* left = new QVBoxLayout();
  auto* right = new QVBoxLayout();
  columns->addLayout(left, 1);
  columns->addLayout(right, 1);
  layout->addLayout(columns);

  // Model
  auto* model_box = new QGroupBox(tr("Model"), this);
  auto* model_form = new QFormLayout(model_box);
  auto* model_row = new QHBoxLayout();
  model_ = new QLineEdit(model_box);
  model_->setPlaceholderText(tr("Default: %1").arg(default_model_path()));
  model_->setClearButtonEnabled(true);
  auto* pick_file = new QPushButton(tr("File…"), model_box);
  auto* pick_folder = new QPushButton(tr("Folder…"), model_box);
  model_row->addWidget(model_, 1);
  model_row->addWidget(pick_file);
  model_row->addWidget(pick_folder);
  model_form->addRow(tr("Model file or folder:"), model_row);
  load_progress_ = new QProgressBar(model_box);
  load_progress_->setRange(0, 1000);
  load_progress_->setVisible(false);
  model_form->addRow(QString(), load_progress_);
  status_ = new QLabel(model_box);
  status_->setObjectName("loadStatus");
  status_->setWordWrap(true);
  status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  model_form->addRow(QString(), status_);
  backend_ = new QComboBox(model_box);
  backend_->addItem(tr("CPU"), "cpu");
  backend_->addItem(tr("CUDA (GPU)"), "cuda");
#if FOLIO_UI_REMOTE
  backend_->addItem(tr("Remote server (OpenAI-compatible API)"), "remote");
#endif
  backend_->setObjectName("backendCombo");
  model_form->addRow(tr("Backend:"), backend_);
  gpus_row_ = new QWidget(model_box);
  gpus_row_->setObjectName("gpusRow");
  gpus_layout_ = new QVBoxLayout(gpus_row_);
  gpus_layout_->setContentsMargins(0, 0, 0, 0);
  gpus_note_ = new QLabel(gpus_row_);
  gpus_note_->setObjectName("gpusNote");
  gpus_note_->setWordWrap(true);
  gpus_layout_->addWidget(gpus_note_);
  model_form->addRow(tr("GPUs:"), gpus_row_);
  threads_ = new QSpinBox(model_box);
  threads_->setRange(0, 1024);
  threads_->setSpecialValueText(tr("all cores (%1)").arg(QThread::idealThreadCount()));
  model_form->addRow(tr("CPU threads:"), threads_);
  context_ = new QSpinBox(model_box);
  context_->setObjectName("contextSpin");
  context_->setRange(0, 1 << 20);
  context_->setSingleStep(1024);
  context_->setSpecialValueText(tr("model default (up to 8,192)"));
  context_->setSuffix(tr(" tokens"));
  model_form->addRow(tr("Context size:"), context_);
  kv_dtype_ = new QComboBox(model_box);
  kv_dtype_->setObjectName("kvDtypeCombo");
  kv_dtype_->addItem(tr("Full precision (fp32 on the CPU, bf16 on the GPU)"), "native");
  kv_dtype_->addItem(tr("8-bit (q8): about half the KV cache's GPU memory"), "q8");
  kv_dtype_->setToolTip(tr("The KV cache holds every token of the documents and the conversation. In 8 bits (int8 "
                           "blocks of 32 values with a scale each) answers barely change (SmolLM2's perplexity +0.17% "
                           "at 8K tokens) and on the GPU the cache takes 56% of bf16's memory, so a longer context "
                           "fits (an 8B model with 4-bit weights: 128K tokens in 14.3 GiB instead of 21.3 GiB). On the "
                           "CPU the values are rounded to 8 bits but kept in fp32 (no memory saved). The load status "
                           "below says the largest context that fits."));
  model_form->addRow(tr("KV cache:"), kv_dtype_);
  keep_kv_ = new QCheckBox(model_box);
  keep_kv_->setObjectName("keepKvBox");
  {
    // What it takes now: the files in the cache folder (not made until the first save).
    uint64_t used = 0;
    for (const QFileInfo& f : QDir(kv_cache_folder()).entryInfoList({"*.kv"}, QDir::Files))
      used += static_cast<uint64_t>(f.size());
    keep_kv_->setText(tr("Keep the documents' KV on disk (%1 MiB now, at most %2 GiB)")
                          .arg(QString::number(static_cast<double>(used) / 1048576.0, 'f', 1))
                          .arg(AppSettings::kKvCacheBytes >> 30));
    keep_kv_->setToolTip(tr("The same documents are then answered without reading them again, even after a "
                            "restart, on the CPU and the GPU (where the GPU computes them faster than the disk gives "
                            "them back, they are computed). Files in %1; the least recently used go first.")
                             .arg(kv_cache_folder()));
  }
  model_form->addRow(QString(), keep_kv_);
  model_form_ = model_form;
  model_row_ = model_row;
  left->addWidget(model_box);

  // Remote engine: shown when the backend is "remote".
  remote_box_ = new QGroupBox(tr("Remote server"), this);
  auto* remote_form = new QFormLayout(remote_box_);
  remote_url_ = new QLineEdit(remote_box_);
  remote_url_->setObjectName("remoteUrlEdit");
  remote_url_->setPlaceholderText(tr("http://host:8080/v1"));
  remote_url_->setToolTip(tr("The API's base URL of folio-server, vLLM, SGLang or llama.cpp's server"));
  remote_form->addRow(tr("URL:"), remote_url_);
  api_key_ = new QLineEdit(remote_box_);
  api_key_->setObjectName("apiKeyEdit");
  api_key_->setEchoMode(QLineEdit::Password);
  api_key_->setPlaceholderText(tr("none"));
  api_key_->setToolTip(tr("Sent as 'Authorization: Bearer KEY'. Kept in a file only you can read (%1), "
                          "never in the settings file or a log.")
                           .arg(AppSettings::api_key_path()));
  remote_form->addRow(tr("API key:"), api_key_);
  remote_model_ = new QLineEdit(remote_box_);
  remote_model_->setObjectName("remoteModelEdit");
  remote_model_->setPlaceholderText(tr("the first model the server lists"));
  remote_form->addRow(tr("Model:"), remote_model_);
  test_connection_ = new QPushButton(tr("Test connection"), remote_box_);
  test_connection_->setObjectName("testConnectionButton");
  remote_form->addRow(QString(), test_connection_);
  connection_status_ = new QLabel(remote_box_);
  connection_status_->setObjectName("connectionStatus");
  connection_status_->setWordWrap(true);
  connection_status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  remote_form->addRow(QString(), connection_status_);
  left->addWidget(remote_box_);

  // Attention
  auto* att_box = new QGroupBox(tr("Prefill attention"), this);
  auto* att_form = new QFormLayout(att_box);
  attention_ = new QComboBox(att_box);
  for (const auto& m : attention_modes()) attention_->addItem(m.label, m.name);
  att_form->addRow(tr("Mode:"), attention_);
  threshold_ = new QSpinBox(att_box);
  threshold_->setRange(0, 1 << 20);
  threshold_->setSingleStep(1024);
  threshold_->setSuffix(tr(" tokens"));
  threshold_->setObjectName("sparseThreshold");
  threshold_->setSpecialValueText(tr("As measured"));
  threshold_->setToolTip(tr("Prompts shorter than this use dense attention (applies to sparse modes). "
                            "As measured: where sparse prefill measured faster than dense for this model on "
                            "this backend (folio-sparse crossover), else 16K tokens where the backend gains"));
  att_form->addRow(tr("Sparse above:"), threshold_);
  auto_attention_ = new QLabel(att_box);
  auto_attention_->setObjectName("autoAttention");
  auto_attention_->setWordWrap(true);
  auto_attention_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  att_form->addRow(QString(), auto_attention_);
  left->addWidget(att_box);
  left->addStretch(1);

  // Sampling
  auto* s_box = new QGroupBox(tr("Sampling"), this);
  auto* s_form = new QFormLayout(s_box);
  temperature_ = new QDoubleSpinBox(s_box);
  temperature_->setRange(0.0, 5.0);
  temperature_->setSingleStep(0.05);
  temperature_->setDecimals(2);
  temperature_->setSpecialValueText(tr("0 (greedy)"));
  s_form->addRow(tr("Temperature:"), temperature_);
  top_p_ = new QDoubleSpinBox(s_box);
  top_p_->setRange(0.01, 1.0);
  top_p_->setSingleStep(0.05);
  top_p_->setDecimals(2);
  s_form->addRow(tr("Top-p:"), top_p_);
  top_k_ = new QSpinBox(s_box);
  top_k_->setRange(0, 100000);
  top_k_->setSpecialValueText(tr("off"));
  s_form->addRow(tr("Top-k:"), top_k_);
  min_p_ = new QDoubleSpinBox(s_box);
  min_p_->setRange(0.0, 1.0);
  min_p_->setSingleStep(0.01);
  min_p_->setDecimals(2);
  min_p_->setSpecialValueText(tr("off"));
  s_form->addRow(tr("Min-p:"), min_p_);
  repetition_ = new QDoubleSpinBox(s_box);
  repetition_->setRange(1.0, 3.0);
  repetition_->setSingleStep(0.05);
  repetition_->setDecimals(2);
  s_form->addRow(tr("Repetition penalty:"), repetition_);
  max_tokens_ = new QSpinBox(s_box);
  max_tokens_->setObjectName("maxTokensSpin");
  max_tokens_->setRange(1, 1 << 20);
  s_form->addRow(tr("Max answer tokens:"), max_tokens_);
  seed_ = new QSpinBox(s_box);
  seed_->setRange(-1, std::numeric_limits<int>::max());
  seed_->setSpecialValueText(tr("random"));
  s_form->addRow(tr("Seed:"), seed_);
  right->addWidget(s_box);

  // System prompt
  auto* p_box = new QGroupBox(tr("System prompt"), this);
  auto* p_layout = new QVBoxLayout(p_box);
  system_prompt_ = new QPlainTextEdit(p_box);
  system_prompt_->setObjectName("systemPromptEdit");
  system_prompt_->setPlaceholderText(tr("Optional, e.g. \"Answer in one short paragraph.\" It goes before the documents."));
  system_prompt_->setTabChangesFocus(true);
  system_prompt_->setFixedHeight(system_prompt_->fontMetrics().lineSpacing() * 4 + 12);
  p_layout->addWidget(system_prompt_);
  right->addWidget(p_box);
  right->addStretch(1);

  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Apply | QDialogButtonBox::Cancel |
                                           QDialogButtonBox::RestoreDefaults,
                                       this);
  reset_ = buttons->button(QDialogButtonBox::RestoreDefaults);
  reset_->setText(tr("Reset to defaults"));
  reset_->setToolTip(tr("Sampling, attention and the system prompt back to their defaults (greedy, no repetition "
                        "penalty); the model, backend, threads and context stay. Apply or OK to use them."));
  layout->addWidget(buttons);

  connect(pick_file, &QPushButton::clicked, this, [this] {
    const QString f = QFileDialog::getOpenFileName(this, tr("Choose a model file"), model_->text(),
                                                   tr("Models (*.gguf *.bin *.safetensors);;All files (*)"));
    if (!f.isEmpty()) model_->setText(f);
  });
  connect(pick_folder, &QPushButton::clicked, this, [this] {
    const QString d = QFileDialog::getExistingDirectory(this, tr("Choose a model folder (config.json + safetensors)"),
                                                        model_->text());
    if (!d.isEmpty()) model_->setText(d);
  });
  connect(attention_, &QComboBox::currentIndexChanged, this, &SettingsDialog::update_threshold_enabled);
  connect(backend_, &QComboBox::currentIndexChanged, this, &SettingsDialog::update_backend_rows);
  connect(test_connection_, &QPushButton::clicked, this, &SettingsDialog::test_connection);
  connect(buttons->button(QDialogButtonBox::Apply), &QPushButton::clicked, this, &SettingsDialog::apply);
  connect(reset_, &QPushButton::clicked, this, [this] { set_settings(this->settings().with_defaults()); });
  connect(buttons, &QDialogButtonBox::accepted, this, [this] {
    apply();
    accept();
  });
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  {
    std::string why;
    const std::vector<folio::GpuInfo> gpus = folio::list_gpus(why);
    set_gpus(gpus, QString::fromStdString(why));
  }
  set_settings(settings);
}

void SettingsDialog::set_gpus(const std::vector<folio::GpuInfo>& gpus, const QString& why_none) {
  const QString asked = gpu_boxes_.isEmpty() ? gpus_asked_ : settings().gpus;
  for (QCheckBox* b : gpu_boxes_) delete b;
  gpu_boxes_.clear();
  const auto gib = [](size_t bytes) { return QString::number(static_cast<double>(bytes) / 1073741824.0, 'f', 1); };
  for (const folio::GpuInfo& g : gpus) {
    auto* box = new QCheckBox(tr("cuda:%1 %2 (%3 GiB, %4 free)")
                                  .arg(g.index)
                                  .arg(QString::fromStdString(g.name), gib(g.total_bytes), gib(g.free_bytes)),
                              gpus_row_);
    box->setProperty("gpuIndex", g.index);
    gpus_layout_->insertWidget(gpus_layout_->count() - 1, box);
    gpu_boxes_.push_back(box);
    connect(box, &QCheckBox::toggled, this, &SettingsDialog::update_gpus_note);
  }
  gpus_note_->setProperty("whyNone", why_none);
  AppSettings s;
  s.gpus = asked;
  const std::vector<int> ids = s.gpu_list();
  for (int i = 0; i < gpu_boxes_.size(); ++i) {
    const int index = gpu_boxes_[i]->property("gpuIndex").toInt();
    gpu_boxes_[i]->setChecked(ids.empty() ? i == 0 : std::find(ids.begin(), ids.end(), index) != ids.end());
  }
  gpus_asked_ = asked;
  update_gpus_note();
}

void SettingsDialog::update_gpus_note() {
  int checked = 0;
  for (QCheckBox* b : gpu_boxes_) checked += b->isChecked() ? 1 : 0;
  if (gpu_boxes_.isEmpty())
    gpus_note_->setText(tr("No GPU found here (%1); the CUDA backend then runs on the CPU.")
                            .arg(gpus_note_->property("whyNone").toString()));
  else if (checked == 0)
    gpus_note_->setText(tr("None checked: the first GPU is used."));
  else if (checked == 1)
    gpus_note_->setText(tr("The model runs on the checked GPU."));
  else
    gpus_note_->setText(tr("The model is laid across the %1 checked GPUs (tensor parallel): each holds 1/%1 of "
                           "the attention heads, the KV cache and the MLP, so longer contexts fit.")
                            .arg(checked));
}

void SettingsDialog::set_settings(const AppSettings& s) {
  model_->setText(s.model_path);
  backend_->setCurrentIndex(std::max(0, backend_->findData(s.backend)));
  gpus_asked_ = s.gpus;
  {
    const std::vector<int> ids = s.gpu_list();
    for (int i = 0; i < gpu_boxes_.size(); ++i) {
      const int index = gpu_boxes_[i]->property("gpuIndex").toInt();
      gpu_boxes_[i]->setChecked(ids.empty() ? i == 0 : std::find(ids.begin(), ids.end(), index) != ids.end());
    }
    update_gpus_note();
  }
  threads_->setValue(s.threads);
  context_->setValue(static_cast<int>(std::min<int64_t>(s.context_tokens, context_->maximum())));
  kv_dtype_->setCurrentIndex(std::max(0, kv_dtype_->findData(s.kv_dtype)));
  keep_kv_->setChecked(s.keep_kv_on_disk);
  remote_url_->setText(s.remote_url);
  api_key_->setText(s.remote_api_key);
  remote_model_->setText(s.remote_model);
  attention_->setCurrentIndex(std::max(0, attention_->findData(s.attention_mode)));
  threshold_->setValue(static_cast<int>(std::min<int64_t>(s.sparse_threshold_tokens, threshold_->maximum())));
  temperature_->setValue(s.temperature);
  top_p_->setValue(s.top_p);
  top_k_->setValue(s.top_k);
  min_p_->setValue(s.min_p);
  repetition_->setValue(s.repetition_penalty);
  max_tokens_->setValue(s.max_tokens);
  seed_->setValue(static_cast<int>(std::clamp<int64_t>(s.seed, -1, std::numeric_limits<int>::max())));
  system_prompt_->setPlainText(s.system_prompt);
  update_threshold_enabled();
  update_backend_rows();
}

void SettingsDialog::update_backend_rows() {
  // A remote server has its own model, threads and KV: those rows give way to its URL and key.
  const bool remote = backend_->currentData().toString() == "remote";
  remote_box_->setVisible(remote);
  model_form_->setRowVisible(model_row_, !remote);
  model_form_->setRowVisible(threads_, !remote);
  model_form_->setRowVisible(keep_kv_, !remote);
  model_form_->setRowVisible(gpus_row_, backend_->currentData().toString() == "cuda");
}

void SettingsDialog::test_connection() {
#if FOLIO_UI_REMOTE
  if (check_ != nullptr) return;  // one check at a time
  test_connection_->setEnabled(false);
  connection_status_->setStyleSheet(QString());
  connection_status_->setText(tr("Connecting to %1…").arg(remote_url_->text().trimmed()));
  check_ = new QFutureWatcher<RemoteCheck>(this);
  connect(check_, &QFutureWatcher<RemoteCheck>::finished, this, [this] {
    const RemoteCheck c = check_->result();
    check_->deleteLater();
    check_ = nullptr;
    test_connection_->setEnabled(true);
    connection_status_->setStyleSheet(c.ok ? "color:#2e7d32" : "color:#b00020");
    connection_status_->setText(c.message);
    emit connection_checked(c.ok, c.message);
  });
  check_->setFuture(QtConcurrent::run(check_remote_engine, remote_url_->text(), api_key_->text(),
                                      remote_model_->text(), 5));
#endif
}

AppSettings SettingsDialog::settings() const {
  AppSettings s;
  s.model_path = model_->text().trimmed();
  s.backend = backend_->currentData().toString();
  s.threads = threads_->value();
  if (gpu_boxes_.isEmpty()) {
    s.gpus = gpus_asked_;  // nothing to choose from here: what was asked stays
  } else {
    QStringList ids;
    for (QCheckBox* b : gpu_boxes_)
      if (b->isChecked()) ids << QString::number(b->property("gpuIndex").toInt());
    // the first GPU alone is the default ("")
    const bool first_only = ids.size() == 1 && gpu_boxes_.front()->isChecked();
    s.gpus = first_only ? QString() : ids.join(',');
  }
  s.context_tokens = context_->value();
  s.kv_dtype = kv_dtype_->currentData().toString();
  s.keep_kv_on_disk = keep_kv_->isChecked();
  s.remote_url = remote_url_->text().trimmed();
  s.remote_api_key = api_key_->text().trimmed();
  s.remote_model = remote_model_->text().trimmed();
  s.attention_mode = attention_->currentData().toString();
  s.sparse_threshold_tokens = threshold_->value();
  s.temperature = temperature_->value();
  s.top_p = top_p_->value();
  s.top_k = top_k_->value();
  s.min_p = min_p_->value();
  s.repetition_penalty = repetition_->value();
  s.max_tokens = max_tokens_->value();
  s.seed = seed_->value();
  s.system_prompt = system_prompt_->toPlainText().trimmed();
  return s;
}

void SettingsDialog::update_threshold_enabled() {
  bool uses = false;
  for (const auto& m : attention_modes())
    if (m.name == attention_->currentData().toString()) uses = m.uses_threshold;
  threshold_->setEnabled(uses);
}

void SettingsDialog::apply() {
  emit applied(settings());
}

void SettingsDialog::show_load_progress(double fraction, const QString& stage) {
  load_progress_->setVisible(true);
  load_progress_->setValue(static_cast<int>(std::clamp(fraction, 0.0, 1.0) * 1000));
  load_progress_->setFormat(QString("%1 %p%").arg(stage));
  status_->setStyleSheet(QString());
  status_->setText(tr("Loading…"));
}

void SettingsDialog::show_load_error(const QString& message) {
  load_progress_->setVisible(false);
  status_->setStyleSheet("color:#b00020");
  status_->setText(tr("The model could not be loaded: %1").arg(message));
}

void SettingsDialog::show_loaded(const ModelInfo& info) {
  load_progress_->setVisible(false);
  // Green only for a load that went as asked; a fallback (e.g. to the CPU) is said plainly.
  status_->setStyleSheet(info.notice.isEmpty() ? "color:#2e7d32" : QString());
  // What fits: the largest context this model can have here, and the KV cache's type
  const QString fits = info.largest_context > 0
                           ? "\n" + tr("Largest context here: %1 tokens (KV cache %2)")
                                        .arg(QLocale().toString(static_cast<qlonglong>(info.largest_context)))
                                        .arg(info.kv_type)
                           : QString();
  status_->setText(tr("Loaded %1 (%2, chat format %3, trained for %4 tokens) on %5 in %6 ms%7%8")
                       .arg(info.name, info.architecture, info.chat_format)
                       .arg(info.max_context)
                       .arg(info.backend)
                       .arg(qRound64(info.load_ms))
                       .arg(fits)
                       .arg(info.notice.isEmpty() ? QString() : "\n" + tr("Note: %1").arg(info.notice)));
  // where auto attention turns sparse for this model here, beside the setting it explains
  auto_attention_->setText(info.auto_attention.isEmpty()
                               ? QString()
                               : info.auto_attention.left(1).toUpper() + info.auto_attention.mid(1) + ".");
}

}  // namespace folio::ui
