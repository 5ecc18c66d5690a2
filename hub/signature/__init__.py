"""XML-DSig signatures on edXML packages: policy, verification, signing, trust."""
