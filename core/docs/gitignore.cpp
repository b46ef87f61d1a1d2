#include "core/docs/gitignore.h"

namespace folio::docs {

QString gitignore_glob_to_regex(const QString& glob) {
  QString out = "^";
  const qsizetype n = glob.size();
  qsizetype i = 0;
  while (i < n) {
    const QChar c = glob[i];
    if (c == '*') {
      if (i + 1 < n && glob[i + 1] == '*') {
        qsizetype j = i;
        while (j < n && glob[j] == '*') ++j;  // a run of asterisks
        const bool leading = i == 0 || glob[i - 1] == '/';
        const bool trailing = j == n || glob[j] == '/';
        if (leading && trailing) {
          if (j == n) {
            out += ".*";  // "dir/**": everything inside; "**": everything
            i = j;
          } else {
            out += "(?:.*/)?";  // "**/x", "a/**/b": zero or more folders
            i = j + 1;          // the '/' is part of the group
          }
        } else {
          out += "[^/]*";  // other runs of asterisks are a plain '*'
          i = j;
        }
        continue;
      }
      out += "[^/]*";
      ++i;
      continue;
    }
    if (c == '?') {
      out += "[^/]";
      ++i;
      continue;
    }
    if (c == '\\') {
      if (i + 1 < n) {
        out += QRegularExpression::escape(QString(glob[i + 1]));
        i += 2;
      } else {
        out += "\\\\";
        ++i;
      }
      continue;
    }
    if (c == '[') {
      // A bracket expression up to the closing ']' (a ']' right after '[' or '[!' is literal).
      qsizetype j = i + 1;
      bool negate = false;
      if (j < n && (glob[j] == '!' || glob[j] == '^')) {
        negate = true;
        ++j;
      }
      qsizetype k = j;
      if (k < n && glob[k] == ']') ++k;
      while (k < n && glob[k] != ']') {
        if (glob[k] == '\\' && k + 1 < n) ++k;
        ++k;
      }
      if (k >= n) {  // no closing bracket: a literal '['
        out += "\\[";
        ++i;
        continue;
      }
      QString cls = negate ? "[^/" : "[";
      for (qsizetype m = j; m < k; ++m) {
        const QChar d = glob[m];
        if (d == '\\' && m + 1 < k) {
          cls += '\\';
          cls += glob[++m];
        } else if (d == '[' || d == ']' || d == '^' || d == '\\') {
          cls += '\\';
          cls += d;
        } else {
          cls += d;  // letters, digits, '-' ranges
        }
      }
      cls += ']';
      if (!negate) out += "(?!/)";
      out += cls;
      i = k + 1;
      continue;
    }
    out += QRegularExpression::escape(QString(c));
    ++i;
  }
  out += "$";
  return out;
}

QVector<GitignoreRule> parse_gitignore(const QString& text, const QString& base, const QString& source) {
  QVector<GitignoreRule> rules;
  const QStringList lines = text.split('\n');
  for (int ln = 0; ln < lines.size(); ++ln) {
    QString p = lines[ln];
    if (p.endsWith('\r')) p.chop(1);
    if (p.isEmpty() || p.startsWith('#')) continue;
    // Trailing spaces are dropped unless escaped with a backslash.
    while (p.endsWith(' ') && !(p.size() >= 2 && p[p.size() - 2] == '\\')) p.chop(1);
    if (p.isEmpty()) continue;
    GitignoreRule rule;
    rule.pattern = p;
    rule.source = source;
    rule.line = ln + 1;
    rule.base = base;
    if (p.startsWith('!')) {
      rule.negated = true;
      p = p.mid(1);
    }
    if (p.endsWith('/') && !p.endsWith("\\/")) {
      rule.dir_only = true;
      while (p.endsWith('/')) p.chop(1);
    }
    if (p.contains('/')) {
      rule.anchored = true;
      while (p.startsWith('/')) p = p.mid(1);
    }
    if (p.isEmpty()) continue;
    rule.regex = QRegularExpression(gitignore_glob_to_regex(p), QRegularExpression::DontCaptureOption);
    if (!rule.regex.isValid()) continue;  // an odd bracket expression: git ignores it too
    rules.push_back(std::move(rule));
  }
  return rules;
}

bool GitignoreStack::ignored(const QString& rel_path, bool is_dir, const GitignoreRule** rule) const {
  bool result = false;
  const GitignoreRule* decided = nullptr;
  for (const GitignoreRule& r : rules_) {
    if (r.dir_only && !is_dir) continue;
    if (!r.base.isEmpty() && !rel_path.startsWith(r.base)) continue;
    const QString rel = rel_path.mid(r.base.size());
    QString subject = rel;
    if (!r.anchored) {
      const qsizetype slash = rel.lastIndexOf('/');
      if (slash >= 0) subject = rel.mid(slash + 1);
    }
    if (r.regex.match(subject).hasMatch()) {
      result = !r.negated;
      decided = &r;
    }
  }
  if (rule != nullptr) *rule = result ? decided : nullptr;
  return result;
}

}  // namespace folio::docs
