// The prefill attention modes the engine offers (core/attention/sparse.h), for Settings and the
// Compare action: auto (sparse from a threshold length, where the backend gains from it), dense,
// and sparse (per-head Triangular / Interval-Slash / Block-Cluster patterns chosen from the input).
#pragma once

#include <QString>
#include <QStringList>
#include <vector>

namespace folio::ui {

struct AttentionMode {
  QString name;         // stored in settings and in runs.attention_mode: "dense", ...
  QString label;        // shown to the user
  bool uses_threshold;  // whether the sparse-threshold setting applies
};

const std::vector<AttentionMode>& attention_modes();
QStringList attention_mode_names();

}  // namespace folio::ui
