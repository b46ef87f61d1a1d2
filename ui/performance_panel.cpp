#include "ui/performance_panel.h"

#include <QBarCategoryAxis>
#include <QBarSet>
#include <QChart>
#include <QChartView>
#include <QFormLayout>
#include <QGroupBox>
#include <QHorizontalStackedBarSeries>
#include <QLegendMarker>
#include <QLineSeries>
#include <QLocale>
#include <QScrollArea>
#include <QVBoxLayout>
#include <QValueAxis>
#include <algorithm>
#include <cmath>

namespace folio::ui {

namespace {

constexpr double kMiB = 1024.0 * 1024.0;
const char* const kCategories[4] = {"weights", "kv", "scratch", "free"};

QString tokens(int64_t n) {
  return QLocale().toString(qint64(n));
}

QString duration_text(double ms) {
  if (ms < 1000.0) return QObject::tr("%1 ms").arg(std::lround(ms));
  if (ms < 60000.0) return QObject::tr("%1 s").arg(ms / 1000.0, 0, 'f', 1);
  const long s = std::lround(ms / 1000.0);
  return QObject::tr("%1 min %2 s").arg(s / 60).arg(s % 60);
}

QChart* plain_chart() {
  auto* c = new QChart();
  c->setMargins(QMargins(4, 4, 4, 4));
  c->setBackgroundRoundness(0);
  c->legend()->setAlignment(Qt::AlignBottom);
  c->setAnimationOptions(QChart::NoAnimation);
  return c;
}

}  // namespace

PerformancePanel::PerformancePanel(QWidget* parent) : QWidget(parent) {
  // A fixed width, whatever the figures say: the chat keeps the room, and every text wraps. What
  // does not fit the height scrolls (a 640 px window), never overlaps.
  setFixedWidth(kWidth);
  auto* outer = new QVBoxLayout(this);
  outer->setContentsMargins(0, 0, 0, 0);
  auto* scroll = new QScrollArea(this);
  scroll->setObjectName("performanceScroll");
  scroll->setFrameShape(QFrame::NoFrame);
  scroll->setWidgetResizable(true);
  scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  outer->addWidget(scroll);
  content_ = new QWidget(scroll);
  content_->setObjectName("performanceContent");
  scroll->setWidget(content_);
  QWidget* const self = content_;  // the parent of everything below
  auto* layout = new QVBoxLayout(self);
  layout->setContentsMargins(6, 6, 6, 6);

  auto* now = new QGroupBox(tr("Now"), self);
  auto* now_layout = new QVBoxLayout(now);
  phase_label_ = new QLabel(now);
  phase_label_->setObjectName("phaseLabel");
  QFont big = phase_label_->font();
  big.setPointSizeF(big.pointSizeF() * 1.25);
  big.setBold(true);
  phase_label_->setFont(big);
  phase_label_->setWordWrap(true);
  progress_ = new QProgressBar(now);
  progress_->setObjectName("prefillProgress");
  rate_ = new QLabel(now);
  rate_->setObjectName("rateLabel");
  rate_->setWordWrap(true);
  model_ = new QLabel(now);
  model_->setWordWrap(true);
  model_->setStyleSheet("color:#555");
  now_layout->addWidget(phase_label_);
  now_layout->addWidget(progress_);
  now_layout->addWidget(rate_);
  now_layout->addWidget(model_);
  layout->addWidget(now);

  auto* last = new QGroupBox(tr("Last answer"), self);
  auto* form = new QFormLayout(last);
  form->setRowWrapPolicy(QFormLayout::WrapAllRows);  // each figure under its name: the panel is narrow
  form->setVerticalSpacing(2);
  ttft_ = new QLabel("–", last);
  ttft_->setObjectName("ttftLabel");
  prefill_ = new QLabel("–", last);
  decode_ = new QLabel("–", last);
  decode_->setObjectName("decodeLabel");
  reused_ = new QLabel("–", last);
  reused_->setObjectName("reusedLabel");
  stop_ = new QLabel("–", last);
  used_ = new QLabel("–", last);
  used_->setObjectName("documentsUsedLabel");
  used_->setTextFormat(Qt::PlainText);  // file names are shown as they are
  for (QLabel* l : {ttft_, prefill_, decode_, reused_, stop_, used_}) l->setWordWrap(true);
  form->addRow(tr("Time to first token:"), ttft_);
  form->addRow(tr("Prefill:"), prefill_);
  form->addRow(tr("Decode:"), decode_);
  form->addRow(tr("KV cache:"), reused_);
  form->addRow(tr("Stopped:"), stop_);
  form->addRow(tr("Documents in the prompt:"), used_);
  layout->addWidget(last);

  // Memory: one horizontal stacked bar per device.
  memory_chart_ = plain_chart();
  memory_chart_->setTitle(tr("Memory (MiB)"));
  memory_series_ = new QHorizontalStackedBarSeries();
  // Short names and a smaller legend font: the four fit the panel's width unelided.
  const QString names[4] = {tr("Weights"), tr("KV"), tr("Scratch"), tr("Free")};
  QFont legend_font = memory_chart_->legend()->font();
  legend_font.setPointSizeF(legend_font.pointSizeF() * 0.85);
  memory_chart_->legend()->setFont(legend_font);
  const QColor colors[4] = {QColor(0x3f, 0x51, 0xb5), QColor(0xef, 0x6c, 0x00), QColor(0x8e, 0x24, 0xaa),
                            QColor(0xc8, 0xe6, 0xc9)};
  for (int i = 0; i < 4; ++i) {
    sets_[i] = new QBarSet(names[i]);
    sets_[i]->setColor(colors[i]);
    sets_[i]->setBorderColor(colors[i]);
    memory_series_->append(sets_[i]);
  }
  memory_chart_->addSeries(memory_series_);
  memory_devices_ = new QBarCategoryAxis();
  memory_axis_ = new QValueAxis();
  memory_axis_->setLabelFormat("%.0f");
  memory_chart_->addAxis(memory_devices_, Qt::AlignLeft);
  memory_chart_->addAxis(memory_axis_, Qt::AlignBottom);
  memory_series_->attachAxis(memory_devices_);
  memory_series_->attachAxis(memory_axis_);
  memory_view_ = new QChartView(memory_chart_, self);
  memory_view_->setObjectName("memoryChart");
  memory_view_->setRenderHint(QPainter::Antialiasing);
  memory_view_->setMinimumHeight(170);
  layout->addWidget(memory_view_);
  memory_note_ = new QLabel(self);
  memory_note_->setWordWrap(true);
  memory_note_->setStyleSheet("color:#555");
  layout->addWidget(memory_note_);

  ttft_chart_ = plain_chart();
  ttft_chart_->setTitle(tr("TTFT vs. context length"));
  ttft_x_ = new QValueAxis();
  ttft_x_->setTitleText(tr("context (tokens)"));
  ttft_x_->setLabelFormat("%.0f");
  ttft_x_->setTickCount(4);  // lengths have up to six digits: fewer labels so none is elided
  QFont axis_font = ttft_x_->labelsFont();
  axis_font.setPointSizeF(axis_font.pointSizeF() * 0.85);
  ttft_x_->setLabelsFont(axis_font);
  ttft_y_ = new QValueAxis();
  ttft_y_->setTitleText(tr("TTFT (ms)"));
  ttft_y_->setLabelFormat("%.0f");
  ttft_chart_->addAxis(ttft_x_, Qt::AlignBottom);
  ttft_chart_->addAxis(ttft_y_, Qt::AlignLeft);
  ttft_view_ = new QChartView(ttft_chart_, self);
  ttft_view_->setObjectName("ttftChart");
  ttft_view_->setRenderHint(QPainter::Antialiasing);
  ttft_view_->setMinimumHeight(230);
  layout->addWidget(ttft_view_, 1);

  compare_ = new QPushButton(tr("Compare attention modes"), self);
  compare_->setObjectName("compareButton");
  compare_->setToolTip(tr("Measure TTFT of the current documents at several lengths under each attention mode"));
  layout->addWidget(compare_);
  connect(compare_, &QPushButton::clicked, this, &PerformancePanel::compare_requested);

  set_phase(Phase::Idle);
  show_memory({});
}

void PerformancePanel::set_phase(Phase phase) {
  phase_ = phase;
  phase_label_->setText(phase_label(phase));
  if (phase == Phase::Idle) {
    progress_->setRange(0, 1);
    progress_->setValue(0);
    progress_->setFormat(tr("ready"));
    rate_->clear();
  } else if (phase == Phase::Prefill || phase == Phase::Measuring) {
    first_progress_ms_ = -1.0;
    progress_->setRange(0, 0);  // busy until the first chunk reports
    rate_->setText(tr("Preparing the prompt…"));
  } else if (phase == Phase::Generating) {
    progress_->setRange(0, 1);
    progress_->setValue(1);
    progress_->setFormat(tr("prompt read"));
  } else if (phase == Phase::Loading) {
    progress_->setRange(0, 1000);
    progress_->setValue(0);
    rate_->clear();
  }
}

void PerformancePanel::set_load_progress(double fraction, const QString& stage) {
  progress_->setRange(0, 1000);
  progress_->setValue(static_cast<int>(std::clamp(fraction, 0.0, 1.0) * 1000));
  progress_->setFormat(QString("%1 %p%").arg(stage));
}

void PerformancePanel::set_prefill_progress(int64_t done_tokens, int64_t total_tokens, double elapsed_ms) {
  progress_->setRange(0, static_cast<int>(std::max<int64_t>(total_tokens, 1)));
  progress_->setValue(static_cast<int>(done_tokens));
  progress_->setFormat(tr("%1 / %2 tokens").arg(tokens(done_tokens), tokens(total_tokens)));
  // The rate over the chunks seen since the first report (the first chunk's time includes setup).
  if (first_progress_ms_ < 0.0 || done_tokens < first_progress_done_) {
    first_progress_ms_ = elapsed_ms;
    first_progress_done_ = done_tokens;
    const double rate = elapsed_ms > 0 ? done_tokens * 1000.0 / elapsed_ms : 0.0;
    const double left_ms = rate > 0 ? (total_tokens - done_tokens) * 1000.0 / rate : 0.0;
    rate_->setText(done_tokens >= total_tokens
                       ? tr("%1 tok/s").arg(rate, 0, 'f', 0)
                       : tr("%1 tok/s · about %2 left").arg(rate, 0, 'f', 0).arg(duration_text(left_ms)));
    return;
  }
  const double dt = elapsed_ms - first_progress_ms_;
  const double rate = dt > 0 ? (done_tokens - first_progress_done_) * 1000.0 / dt
                             : (elapsed_ms > 0 ? done_tokens * 1000.0 / elapsed_ms : 0.0);
  const double left_ms = rate > 0 ? (total_tokens - done_tokens) * 1000.0 / rate : 0.0;
  rate_->setText(done_tokens >= total_tokens
                     ? tr("%1 tok/s").arg(rate, 0, 'f', 0)
                     : tr("%1 tok/s · about %2 left").arg(rate, 0, 'f', 0).arg(duration_text(left_ms)));
}

void PerformancePanel::set_decode_progress(int64_t n_tokens, double decode_ms) {
  const double rate = decode_ms > 0 && n_tokens > 1 ? (n_tokens - 1) * 1000.0 / decode_ms : 0.0;
  rate_->setText(tr("%1 tokens · %2 tok/s").arg(tokens(n_tokens)).arg(rate, 0, 'f', 1));
}

void PerformancePanel::set_model(const ModelInfo& info, int64_t context_tokens) {
  // A remote engine says so first: its memory and speed are the server's, not this machine's.
  QString text = info.remote ? tr("Remote: %1 at %2 · context %3 tokens · connected in %4")
                                   .arg(info.name, info.path, tokens(context_tokens), duration_text(info.load_ms))
                             : tr("%1 · %2 · context %3 tokens%4 · loaded in %5")
                                   .arg(info.name, info.backend, tokens(context_tokens),
                                        info.kv_type.isEmpty() ? QString() : tr(" · KV %1").arg(info.kv_type),
                                        duration_text(info.load_ms));
  model_->setText(text);  // a backend notice is the window's (one notice, dismissable)
  show_memory(info.memory);
}

QString PerformancePanel::model_text() const {
  return model_->text();
}

void PerformancePanel::show_metrics(const Metrics& m) {
  ttft_->setText(m.decode_tokens > 0 ? duration_text(m.ttft_ms) : tr("no token"));
  QString attention = QString::fromStdString(m.attention_mode);
  if (m.sparse_chunks > 0)
    attention += tr(", density %1, mass kept ~%2%").arg(m.attention_density, 0, 'f', 2).arg(100 * m.est_mass_mean, 0, 'f', 1);
  else if (!attention.isEmpty())
    attention += tr(", dense");
  prefill_->setText(tr("%1 tokens in %2 (%3 tok/s)%4")
                        .arg(tokens(m.prefill_tokens), duration_text(m.prefill_ms))
                        .arg(m.prefill_tok_s, 0, 'f', 0)
                        .arg(attention.isEmpty() ? QString() : " · " + attention));
  if (m.stop == StopReason::Cancelled && m.decode_tok_s <= 0.0)  // no rate before a second token
    decode_->setText(m.decode_tokens == 0   ? tr("stopped")
                     : m.decode_tokens == 1 ? tr("stopped after 1 token")
                                            : tr("stopped after %1 tokens").arg(tokens(m.decode_tokens)));
  else if (m.stop == StopReason::Cancelled)
    decode_->setText(
        tr("%1 tokens, %2 tok/s, stopped").arg(tokens(m.decode_tokens)).arg(m.decode_tok_s, 0, 'f', 1));
  else if (m.decode_tok_s <= 0.0)
    decode_->setText(m.decode_tokens == 1 ? tr("1 token") : tr("%1 tokens").arg(tokens(m.decode_tokens)));
  else
    decode_->setText(tr("%1 tokens, %2 tok/s").arg(tokens(m.decode_tokens)).arg(m.decode_tok_s, 0, 'f', 1));
  reused_->setText(m.reused_tokens > 0
                       ? tr("reused %1 tokens of %2").arg(tokens(m.reused_tokens), tokens(m.prompt_tokens))
                       : tr("nothing reused (%1 prompt tokens)").arg(tokens(m.prompt_tokens)));
  stop_->setText(QString::fromLatin1(stop_reason_name(m.stop)));
  if (!m.memory.empty()) show_memory(m.memory);
}

void PerformancePanel::show_documents_used(const QStringList& lines) {
  used_->setText(lines.isEmpty() ? tr("none") : lines.join('\n'));
}

void PerformancePanel::show_memory(const std::vector<DeviceMemory>& memory) {
  for (auto* set : sets_) set->remove(0, set->count());
  QStringList devices;
  double max_total = 1.0;
  bool free_unknown = false;
  for (const DeviceMemory& d : memory) {
    devices << QString::fromStdString(d.device);
    const double values[4] = {d.weights_bytes / kMiB, d.kv_bytes / kMiB, d.scratch_bytes / kMiB, d.free_bytes / kMiB};
    for (int i = 0; i < 4; ++i) sets_[i]->append(values[i]);
    if (d.free_bytes == 0) free_unknown = true;
    max_total = std::max(max_total, values[0] + values[1] + values[2] + values[3]);
  }
  memory_devices_->clear();
  memory_devices_->append(devices.isEmpty() ? QStringList{tr("(no model)")} : devices);
  memory_axis_->setRange(0, max_total * 1.05);
  memory_axis_->applyNiceNumbers();
  // One bar per device: the view grows with the number of GPUs.
  memory_view_->setMinimumHeight(130 + 40 * std::max<int>(1, static_cast<int>(devices.size())));
  QString note;
  for (const DeviceMemory& d : memory)
    note += tr("%1: weights %2, KV %3, scratch %4 MiB%5\n")
                .arg(QString::fromStdString(d.device))
                .arg(d.weights_bytes / kMiB, 0, 'f', 1)
                .arg(d.kv_bytes / kMiB, 0, 'f', 1)
                .arg(d.scratch_bytes / kMiB, 0, 'f', 1)
                .arg(d.free_bytes > 0 ? tr(", free %1").arg(d.free_bytes / kMiB, 0, 'f', 0) : QString());
  if (free_unknown && !memory.empty()) note += tr("Free memory: not reported by the engine for this device.");
  memory_note_->setText(note.trimmed());
}

void PerformancePanel::set_ttft_series(const std::vector<folio::store::TtftSeries>& series) {
  ttft_chart_->removeAllSeries();
  double max_x = 1.0, max_y = 1.0;
  for (const auto& s : series) {
    auto* line = new QLineSeries();
    // "dense, full prefill" / "dense, reused KV": a reused prefix is not the length's cost.
    QString name = s.attention_mode + ", " + (s.reused ? tr("reused KV") : tr("full prefill"));
    if (!s.model.isEmpty() && std::any_of(series.begin(), series.end(), [&](const auto& o) { return o.model != s.model; }))
      name += " · " + s.model;
    line->setName(name);
    line->setPointsVisible(true);
    for (const auto& p : s.points) {
      line->append(static_cast<double>(p.context_tokens), p.ttft_ms);
      max_x = std::max(max_x, static_cast<double>(p.context_tokens));
      max_y = std::max(max_y, p.ttft_ms);
    }
    ttft_chart_->addSeries(line);
    line->attachAxis(ttft_x_);
    line->attachAxis(ttft_y_);
    if (s.reused) {
      QPen pen = line->pen();
      pen.setStyle(Qt::DashLine);
      line->setPen(pen);
    }
  }
  ttft_chart_->legend()->setVisible(!series.empty());
  bool empty = true;
  for (const auto& s : series) empty = empty && s.points.empty();
  ttft_chart_->setTitle(empty ? tr("TTFT vs. context length<br>(no runs yet: ask, or press Compare)")
                              : tr("TTFT vs. context length"));
  ttft_x_->setRange(0, empty ? 4096.0 : max_x * 1.05);
  ttft_y_->setRange(0, empty ? 1000.0 : max_y * 1.1);
  ttft_x_->applyNiceNumbers();
  ttft_y_->applyNiceNumbers();
}

void PerformancePanel::set_compare_enabled(bool enabled, const QString& why) {
  compare_->setEnabled(enabled);
  compare_->setToolTip(
      enabled ? tr("Measure TTFT of the current documents at several lengths under each attention mode") : why);
}

void PerformancePanel::set_comparing(bool comparing) {
  compare_->setText(comparing ? tr("Cancel measuring") : tr("Compare attention modes"));
  if (comparing) compare_->setEnabled(true);
}

int PerformancePanel::ttft_series_count() const {
  return static_cast<int>(ttft_chart_->series().size());
}

int PerformancePanel::ttft_point_count() const {
  int n = 0;
  for (auto* s : ttft_chart_->series())
    if (auto* line = qobject_cast<QLineSeries*>(s)) n += static_cast<int>(line->count());
  return n;
}

QStringList PerformancePanel::ttft_series_names() const {
  QStringList names;
  for (auto* s : ttft_chart_->series()) names << s->name();
  return names;
}

bool PerformancePanel::ttft_legend_visible() const {
  return ttft_chart_->legend()->isVisible();
}

QStringList PerformancePanel::memory_devices() const {
  return memory_devices_->categories();
}

double PerformancePanel::memory_value_mib(const QString& category, int device) const {
  for (int i = 0; i < 4; ++i)
    if (category == kCategories[i]) return device < sets_[i]->count() ? sets_[i]->at(device) : 0.0;
  return 0.0;
}

}  // namespace folio::ui
