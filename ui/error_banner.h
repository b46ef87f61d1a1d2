// A strip above the conversation that says what went wrong and offers the fix (e.g. "Open
// Settings" when the model cannot be loaded). The app keeps running behind it.
#pragma once

#include <QFrame>
#include <QLabel>
#include <QPushButton>
#include <functional>

namespace folio::ui {

class ErrorBanner : public QFrame {
  Q_OBJECT

 public:
  explicit ErrorBanner(QWidget* parent = nullptr);
  // Shows a message; with action_text, a button that runs action.
  void show_message(const QString& text, const QString& action_text = {}, std::function<void()> action = {});
  QString text() const { return label_->text(); }

 private:
  QLabel* label_ = nullptr;
  QPushButton* action_ = nullptr;
  std::function<void()> on_action_;
};

// A notice that is not an error (e.g. no usable GPU): neutral colours, Dismiss hides it for now,
// "Don't show again" emits dismissed_for_good so the owner remembers it.
class NoticeBar : public QFrame {
  Q_OBJECT

 public:
  explicit NoticeBar(QWidget* parent = nullptr);
  void show_notice(const QString& text, const QString& detail = {});
  QString text() const { return label_->text(); }
  QPushButton* never_button() const { return never_; }

 signals:
  void dismissed_for_good();

 private:
  QLabel* label_ = nullptr;
  QPushButton* never_ = nullptr;
};

}  // namespace folio::ui
