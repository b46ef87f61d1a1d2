#include "ui/app_icon.h"

namespace folio::ui {

QIcon app_icon() {
  QIcon icon;
  for (int size : {16, 24, 32, 48, 64, 128, 256, 512})
    icon.addFile(QStringLiteral(":/folio/icons/folio-%1.png").arg(size), QSize(size, size));
  return icon;
}

}  // namespace folio::ui
