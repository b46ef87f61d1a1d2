// Settings: model file or folder (with load progress and a clear error for a bad file), backend
// and threads, prefill attention and its threshold, context size, and sampling. Non-blocking:
// Apply / OK emit `applied`; MainWindow stores the settings and reports the load back here.
#pragma once

#include <QCheckBox>
#include <QComboBox>
#include <QDialog>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QFutureWatcher>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

#include "ui/app_settings.h"
#include "ui/engine_types.h"

namespace folio::ui {

struct RemoteCheck;

class SettingsDialog : public QDialog {
  Q_OBJECT

 public:
  SettingsDialog(const AppSettings& settings, QWidget* parent = nullptr);

  AppSettings settings() const;
  void set_settings(const AppSettings& settings);

  // The load of the model these settings asked for.
  void show_load_progress(double fraction, const QString& stage);
  void show_load_error(const QString& message);
  void show_loaded(const ModelInfo& info);
  QString load_status() const { return status_->text(); }
  QString auto_attention_text() const { return auto_attention_->text(); }

  // Widgets, for tests.
  QLineEdit* model_edit() const { return model_; }
  QSpinBox* context_spin() const { return context_; }
  QComboBox* kv_dtype_combo() const { return kv_dtype_; }
  QSpinBox* max_tokens_spin() const { return max_tokens_; }
  QDoubleSpinBox* temperature_spin() const { return temperature_; }
  QComboBox* attention_combo() const { return attention_; }
  QDoubleSpinBox* repetition_spin() const { return repetition_; }
  QPlainTextEdit* system_prompt_edit() const { return system_prompt_; }
  QCheckBox* keep_kv_box() const { return keep_kv_; }
  QPushButton* reset_button() const { return reset_; }
  QComboBox* backend_combo() const { return backend_; }
  QLineEdit* remote_url_edit() const { return remote_url_; }
  QLineEdit* api_key_edit() const { return api_key_; }
  QLineEdit* remote_model_edit() const { return remote_model_; }
  QPushButton* test_connection_button() const { return test_connection_; }
  QString connection_status() const { return connection_status_->text(); }
  QGroupBox* remote_box() const { return remote_box_; }
  // Backend CUDA: a box per GPU found; two or more checked lay the model across them.
  QList<QCheckBox*> gpu_boxes() const { return gpu_boxes_; }
  QString gpus_note() const { return gpus_note_->text(); }
  bool gpus_row_visible() const { return model_form_->isRowVisible(gpus_row_); }
  // The GPUs to offer (the constructor asks the registered GPU backend; tests give their own).
  void set_gpus(const std::vector<folio::GpuInfo>& gpus, const QString& why_none);

  // Settings ▸ Remote server ▸ Test connection: checks the URL, key and model off the GUI thread
  // and shows what it found (connection_checked when done).
  void test_connection();

 signals:
  void applied(const folio::ui::AppSettings& settings);
  void connection_checked(bool ok, const QString& message);

 private:
  void apply();
  void update_threshold_enabled();
  void update_backend_rows();
  void update_gpus_note();

  QLineEdit* model_ = nullptr;
  QProgressBar* load_progress_ = nullptr;
  QLabel* status_ = nullptr;
  QComboBox* backend_ = nullptr;
  QWidget* gpus_row_ = nullptr;
  QVBoxLayout* gpus_layout_ = nullptr;
  QList<QCheckBox*> gpu_boxes_;
  QLabel* gpus_note_ = nullptr;
  QString gpus_asked_;  // the settings' GPUs, kept where none are listed here
  QSpinBox* threads_ = nullptr;
  QComboBox* attention_ = nullptr;
  QSpinBox* threshold_ = nullptr;
  QLabel* auto_attention_ = nullptr;  // where auto attention turns sparse for the loaded model
  QSpinBox* context_ = nullptr;
  QComboBox* kv_dtype_ = nullptr;
  QDoubleSpinBox* temperature_ = nullptr;
  QDoubleSpinBox* top_p_ = nullptr;
  QSpinBox* top_k_ = nullptr;
  QDoubleSpinBox* min_p_ = nullptr;
  QDoubleSpinBox* repetition_ = nullptr;
  QSpinBox* max_tokens_ = nullptr;
  QSpinBox* seed_ = nullptr;
  QPlainTextEdit* system_prompt_ = nullptr;
  QCheckBox* keep_kv_ = nullptr;
  QPushButton* reset_ = nullptr;
  QFormLayout* model_form_ = nullptr;
  QHBoxLayout* model_row_ = nullptr;
  QGroupBox* remote_box_ = nullptr;
  QLineEdit* remote_url_ = nullptr;
  QLineEdit* api_key_ = nullptr;
  QLineEdit* remote_model_ = nullptr;
  QPushButton* test_connection_ = nullptr;
  QLabel* connection_status_ = nullptr;
  QFutureWatcher<RemoteCheck>* check_ = nullptr;  // the connection check under way
};

}  // namespace folio::ui

Q_DECLARE_METATYPE(folio::ui::AppSettings)
