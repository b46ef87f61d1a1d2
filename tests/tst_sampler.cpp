#include <QtTest>
class Stub_tst_sampler : public QObject { Q_OBJECT private slots: void todo() { QSKIP("not written yet"); } };
QTEST_APPLESS_MAIN(Stub_tst_sampler)
#include "tst_sampler.moc"
