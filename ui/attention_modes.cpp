#include "ui/attention_modes.h"

namespace folio::ui {

const std::vector<AttentionMode>& attention_modes() {
  static const std::vector<AttentionMode> modes = {
      {"auto", "Auto (sparse above the threshold, where it pays)", true},
      {"dense", "Dense (every causal tile)", false},
      {"sparse", "Sparse (per-head patterns from the input, every chunk)", false},
  };
  return modes;
}

QStringList attention_mode_names() {
  QStringList names;
  for (const auto& m : attention_modes()) names << m.name;
  return names;
}

}  // namespace folio::ui
