"""The Ansible layer: the generated inventory, the phases and the runs of the roles.

inventory.py writes inventory/<lab>/hosts.yml and group_vars/all.yml (the lab's facts for the roles);
phases.py names the phases (one playbook and tag each); runner.py drives ansible-playbook through
ansible-runner and hands its events to the main thread through a queue; provision.py is `labctl
provision` without the terminal; render.py is `labctl render`. csr.py and k8s_pki.py are the Python
halves of two role decisions (the kubelet serving CSR check, the discovery CA hash);
kubeadm_schema.py and manifests.py check the documents the roles render. Named `provisioning`, not
`ansible`, so it is never mistaken for (or shadows) the ansible package itself.
"""
