#include <QtTest>
class Stub_tst_model_loading : public QObject { Q_OBJECT private slots: void todo() { QSKIP("not written yet"); } };
QTEST_APPLESS_MAIN(Stub_tst_model_loading)
#include "tst_model_loading.moc"
