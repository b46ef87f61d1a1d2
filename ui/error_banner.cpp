#include "ui/error_banner.h"

#include <QHBoxLayout>
#include <QStyle>
#include <QToolButton>

namespace folio::ui {

namespace {

// What both bars are: a styled frame with an icon, a wrapping selectable label, a button of the
// caller's and a close button that hides the bar. Returns the label.
QLabel* build_bar(QFrame* bar, const QString& name, const QString& colours, QStyle::StandardPixmap icon_kind,
                  QPushButton* button) {
  bar->setObjectName(name);
  bar->setStyleSheet("#" + name + " { " + colours + " border-radius: 4px; }");
  auto* layout = new QHBoxLayout(bar);
  layout->setContentsMargins(8, 6, 8, 6);
  auto* icon = new QLabel(bar);
  icon->setPixmap(bar->style()->standardIcon(icon_kind).pixmap(20, 20));
  auto* label = new QLabel(bar);
  label->setWordWrap(true);
  label->setTextInteractionFlags(Qt::TextSelectableByMouse);
  auto* close = new QToolButton(bar);
  close->setIcon(bar->style()->standardIcon(QStyle::SP_TitleBarCloseButton));
  close->setToolTip(QFrame::tr("Dismiss"));
  layout->addWidget(icon);
  layout->addWidget(label, 1);
  layout->addWidget(button);
  layout->addWidget(close);
  QObject::connect(close, &QToolButton::clicked, bar, &QWidget::hide);
  return label;
}

}  // namespace

ErrorBanner::ErrorBanner(QWidget* parent) : QFrame(parent) {
  action_ = new QPushButton(this);
  label_ = build_bar(this, "errorBanner", "background: #fde7e9; border: 1px solid #e57373;", QStyle::SP_MessageBoxWarning,
                     action_);
  connect(action_, &QPushButton::clicked, this, [this] {
    if (on_action_) on_action_();
  });
  hide();
}

void ErrorBanner::show_message(const QString& text, const QString& action_text, std::function<void()> action) {
  label_->setText(text);
  action_->setText(action_text);
  action_->setVisible(!action_text.isEmpty());
  on_action_ = std::move(action);
  show();
}

NoticeBar::NoticeBar(QWidget* parent) : QFrame(parent) {
  never_ = new QPushButton(tr("Don't show again"), this);
  label_ = build_bar(this, "noticeBar", "background: #eef1f5; border: 1px solid #b0bec5;",
                     QStyle::SP_MessageBoxInformation, never_);
  connect(never_, &QPushButton::clicked, this, [this] {
    hide();
    emit dismissed_for_good();
  });
  hide();
}

void NoticeBar::show_notice(const QString& text, const QString& detail) {
  label_->setText(text);
  label_->setToolTip(detail);
  show();
}

}  // namespace folio::ui
