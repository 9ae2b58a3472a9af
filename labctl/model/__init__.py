"""The model: what a lab is (lab.yml validated), and every fact that follows from it.

config.py validates lab.yml into a `Lab`; facts.py derives the lab's facts from it once (registry
address, mirroring and every image's names, enabled addons, exact versions, the NFS export);
versions.py (with pins.yml) holds every version labctl pins, images.py and addon_images.py the
images a lab needs, ports.py the ports each host already serves. Pure data: nothing here touches
a machine. docs_ref.py writes the README's lab.yml reference from the model's field descriptions.
"""
