import cbreg

def on_note(freq, name):
    print(freq, name)

with cbreg.register(on_note) as sub:      # unregisters on exit from the block
    cbreg.invoke(sub.id, 440.0, "A4")     # or fire sub.id from a native thread

once = cbreg.register(print, once=True)
cbreg.invoke(once.id, "runs once")
try:
    cbreg.invoke(once.id, "again")
except cbreg.NotFound:
    pass
print(cbreg.stats())
