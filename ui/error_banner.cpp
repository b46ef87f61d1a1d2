#include "ui/error_banner.h"

#include <QHBoxLayout>
#include <QStyle>
#include <QToolButton>

namespace folio::ui {

ErrorBanner::ErrorBanner(QWidget* parent) : QFrame(parent) {
  setObjectName("errorBanner");
  setStyleSheet("#errorBanner { background: #fde7e9; border: 1px solid #e57373; border-radius: 4px; }");
  auto* layout = new QHBoxLayout(this);
  layout->setContentsMargins(8, 6, 8, 6);
  auto* icon = new QLabel(this);
  icon->setPixmap(style()->standardIcon(QStyle::SP_MessageBoxWarning).pixmap(20, 20));
  label_ = new QLabel(this);
  label_->setWordWrap(true);
  label_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  action_ = new QPushButton(this);
  auto* close = new QToolButton(this);
  close->setIcon(style()->standardIcon(QStyle::SP_TitleBarCloseButton));
  close->setToolTip(tr("Dismiss"));
  layout->addWidget(icon);
  layout->addWidget(label_, 1);
  layout->addWidget(action_);
  layout->addWidget(close);
  connect(close, &QToolButton::clicked, this, &QWidget::hide);
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
  setObjectName("noticeBar");
  setStyleSheet("#noticeBar { background: #eef1f5; border: 1px solid #b0bec5; border-radius: 4px; }");
  auto* layout = new QHBoxLayout(this);
  layout->setContentsMargins(8, 6, 8, 6);
  auto* icon = new QLabel(this);
  icon->setPixmap(style()->standardIcon(QStyle::SP_MessageBoxInformation).pixmap(20, 20));
  label_ = new QLabel(this);
  label_->setWordWrap(true);
  label_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  never_ = new QPushButton(tr("Don't show again"), this);
  auto* close = new QToolButton(this);
  close->setIcon(style()->standardIcon(QStyle::SP_TitleBarCloseButton));
  close->setToolTip(tr("Dismiss"));
  layout->addWidget(icon);
  layout->addWidget(label_, 1);
  layout->addWidget(never_);
  layout->addWidget(close);
  connect(close, &QToolButton::clicked, this, &QWidget::hide);
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
