// The prefill attention modes the engine offers, for Settings and the Compare action. Today the
// engine runs dense attention only; the sparse modes (SparseAccelerate) join this list when the
// engine gains them, and everything that iterates over modes picks them up.
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
