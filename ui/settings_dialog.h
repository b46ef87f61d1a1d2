// Settings: model file or folder (with load progress and a clear error for a bad file), backend
// and threads, prefill attention and its threshold, context size, and sampling. Non-blocking:
// Apply / OK emit `applied`; MainWindow stores the settings and reports the load back here.
#pragma once

#include <QCheckBox>
#include <QComboBox>
#include <QDialog>
#include <QDoubleSpinBox>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>

#include "ui/app_settings.h"
#include "ui/engine_types.h"

namespace folio::ui {

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

  // Widgets, for tests.
  QLineEdit* model_edit() const { return model_; }
  QSpinBox* context_spin() const { return context_; }
  QSpinBox* max_tokens_spin() const { return max_tokens_; }
  QDoubleSpinBox* temperature_spin() const { return temperature_; }
  QComboBox* attention_combo() const { return attention_; }
  QDoubleSpinBox* repetition_spin() const { return repetition_; }
  QPlainTextEdit* system_prompt_edit() const { return system_prompt_; }
  QCheckBox* keep_kv_box() const { return keep_kv_; }
  QPushButton* reset_button() const { return reset_; }

 signals:
  void applied(const folio::ui::AppSettings& settings);

 private:
  void apply();
  void update_threshold_enabled();

  QLineEdit* model_ = nullptr;
  QProgressBar* load_progress_ = nullptr;
  QLabel* status_ = nullptr;
  QComboBox* backend_ = nullptr;
  QSpinBox* threads_ = nullptr;
  QComboBox* attention_ = nullptr;
  QSpinBox* threshold_ = nullptr;
  QSpinBox* context_ = nullptr;
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
};

}  // namespace folio::ui

Q_DECLARE_METATYPE(folio::ui::AppSettings)
