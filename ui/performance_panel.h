// The performance panel: what the engine is doing now (loading, prefill with tokens done/total,
// rate and time left, generating), the last answer's TTFT, decode rate and reused prefix, memory by
// category per device (a stacked bar per device), and TTFT against context length for the
// measured runs (one line per attention mode), with Compare to measure the current documents.
// Every figure comes from the engine's Metrics.
#pragma once

#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QWidget>
#include <vector>

#include "core/engine/engine.h"
#include "core/store/store.h"
#include "ui/engine_types.h"

class QChart;
class QChartView;
class QHorizontalStackedBarSeries;
class QBarSet;
class QBarCategoryAxis;
class QValueAxis;

namespace folio::ui {

class PerformancePanel : public QWidget {
  Q_OBJECT

 public:
  static constexpr int kWidth = 280;  // px, fixed
  explicit PerformancePanel(QWidget* parent = nullptr);

  void set_phase(Phase phase);
  Phase phase() const { return phase_; }
  void set_load_progress(double fraction, const QString& stage);
  void set_prefill_progress(int64_t done_tokens, int64_t total_tokens, double elapsed_ms);
  void set_decode_progress(int64_t tokens, double decode_ms);
  void set_model(const ModelInfo& info, int64_t context_tokens);
  QString model_text() const;  // the model line: name, backend (or "Remote: ..."), context
  void show_metrics(const Metrics& m);
  // What of the documents the last answer's prompt held: one line per document ("manual.pdf: pages
  // 1-3, 8-10 of 14", "notes.md: all"); empty = no documents.
  void show_documents_used(const QStringList& lines);
  void show_memory(const std::vector<DeviceMemory>& memory);
  void set_ttft_series(const std::vector<folio::store::TtftSeries>& series);
  void set_compare_enabled(bool enabled, const QString& why = {});
  void set_comparing(bool comparing);

  // For tests: what the charts hold.
  int ttft_series_count() const;
  int ttft_point_count() const;
  QStringList ttft_series_names() const;
  bool ttft_legend_visible() const;
  QStringList memory_devices() const;
  double memory_value_mib(const QString& category, int device) const;  // "weights", "kv", "scratch", "free"
  QString phase_text() const { return phase_label_->text(); }
  QString reuse_text() const { return reused_->text(); }
  QString documents_used_text() const { return used_->text(); }
  QString ttft_text() const { return ttft_->text(); }
  QString decode_text() const { return decode_->text(); }
  QProgressBar* progress() const { return progress_; }
  QWidget* content() const { return content_; }  // the scrolled widget that holds everything

 signals:
  void compare_requested();

 private:
  Phase phase_ = Phase::Idle;
  QWidget* content_ = nullptr;
  QLabel* phase_label_ = nullptr;
  QProgressBar* progress_ = nullptr;
  QLabel* rate_ = nullptr;
  QLabel* model_ = nullptr;
  QLabel* ttft_ = nullptr;
  QLabel* prefill_ = nullptr;
  QLabel* decode_ = nullptr;
  QLabel* reused_ = nullptr;
  QLabel* used_ = nullptr;
  QLabel* stop_ = nullptr;
  QChart* memory_chart_ = nullptr;
  QChartView* memory_view_ = nullptr;
  QHorizontalStackedBarSeries* memory_series_ = nullptr;
  QBarSet* sets_[4] = {};
  QBarCategoryAxis* memory_devices_ = nullptr;
  QValueAxis* memory_axis_ = nullptr;
  QLabel* memory_note_ = nullptr;
  QChart* ttft_chart_ = nullptr;
  QChartView* ttft_view_ = nullptr;
  QValueAxis* ttft_x_ = nullptr;
  QValueAxis* ttft_y_ = nullptr;
  QPushButton* compare_ = nullptr;
  double first_progress_ms_ = -1.0;
  int64_t first_progress_done_ = 0;
};

}  // namespace folio::ui
